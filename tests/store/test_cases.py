"""The case store on SQLite and PostgreSQL: round trips, policy hooks, files, erasure, keys.

Every test runs against a freshly initialised deployment (see ``conftest.backend``) and
goes through :class:`~cpms_hub.store.CaseStore` exactly as the store service does; the
only shortcuts are direct SQL statements that play the part of an attacker or an operator
with database access.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from sqlalchemy import delete, func, select, update

from cpms_hub.crypto import HEADER_SIZE, FieldCipher
from cpms_hub.domain import (
    CaseDraft,
    CaseStatus,
    IntegrityError,
    KeyUnavailableError,
    MemberRole,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)
from cpms_hub.policy import Decision
from cpms_hub.settings import CpmsSettings
from cpms_hub.state import State, open_state
from cpms_hub.store import AuditContext
from cpms_hub.store.schema import BlobRow, CaseMemberRow, CaseRow, DataKeyRow

T = TypeVar("T")

CTX = AuditContext(actor="alice", client="10.0.0.7")


def allow(_ref: object) -> Decision:
    return Decision(True, ("test",))


def deny(_ref: object) -> Decision:
    return Decision(False, ("not a member of the case", "token lacks cases:read"))


def new_case(
    state: State,
    title: str = "Suspected ciliopathy",
    summary: str = "Renal cysts and retinal dystrophy.",
    *,
    owner: str = "alice",
    network: str = "ERN-TEST",
    pseudonym: str | None = None,
):
    return state.cases.create_case(
        CaseDraft(title=title, clinical_summary=summary),
        owner=owner,
        hospital="Hospital A",
        network=network,
        ctx=AuditContext(actor=owner, client="10.0.0.7"),
        pseudonym=pseudonym,
    )


def chunked(data: bytes, sizes: tuple[int, ...] = (1, 777, 65536, 65537, 200_000, 3)):
    """Yield ``data`` in irregular pieces, so pieces straddle segment boundaries."""
    pos = 0
    i = 0
    while pos < len(data):
        size = sizes[i % len(sizes)]
        yield data[pos : pos + size]
        pos += size
        i += 1


def blob_files(state: State) -> list[Path]:
    return sorted(p for p in Path(state.settings.blob_dir).rglob("*") if p.is_file())


def count(state: State, stmt) -> int:
    with state.engine.connect() as conn:
        return conn.execute(stmt).scalar_one()


def all_entries(state: State):
    with state.sessions() as s:
        return list(reversed(state.audit.entries(s, limit=100_000)))


def within(seconds: float, fn: Callable[[], T]) -> T:
    """Run ``fn`` but fail fast if it blocks (a lock wait would otherwise take 30 s)."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # handed back to the test thread below
            box["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        pytest.fail(f"call still blocked after {seconds} s (waiting on a database lock?)")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["result"]  # type: ignore[return-value]


# -- cases ---------------------------------------------------------------------------------


def test_create_read_list_update_round_trip(backend: State) -> None:
    created = new_case(
        backend,
        "Ataxia, onset age 4 – Ødegård",
        "Gait ataxia; MRI: cerebellar atrophy.",
        pseudonym="PSN-ROUND-1",
    )
    assert created.owner == "alice"
    assert created.hospital == "Hospital A"
    assert created.network == "ERN-TEST"
    assert created.status is CaseStatus.DRAFT
    assert [(m.user, m.role) for m in created.members] == [("alice", MemberRole.OWNER)]
    assert str(uuid.UUID(created.id)) == created.id

    read = backend.cases.read_case(created.id, authorize=allow, ctx=CTX)
    assert read == created

    listed = backend.cases.list_cases(user="alice", network=None, authorize=allow, ctx=CTX)
    assert listed == [created]

    updated = backend.cases.update_case(
        created.id, title="Ataxia, revised", authorize=allow, ctx=CTX
    )
    assert updated.title == "Ataxia, revised"
    assert updated.clinical_summary == "Gait ataxia; MRI: cerebellar atrophy."
    assert updated.updated_at >= created.updated_at
    assert updated.created_at == created.created_at

    updated = backend.cases.update_case(
        created.id, clinical_summary="Now with neuropathy.", authorize=allow, ctx=CTX
    )
    again = backend.cases.read_case(created.id, authorize=allow, ctx=CTX)
    assert (again.title, again.clinical_summary) == ("Ataxia, revised", "Now with neuropathy.")
    assert again == updated

    # what is stored is ciphertext, and a fresh one per write (random nonces)
    with backend.engine.connect() as conn:
        stored = conn.execute(select(CaseRow).where(CaseRow.id == created.id)).one()
    assert b"Ataxia" not in stored.title_enc
    assert b"neuropathy" not in stored.summary_enc
    assert stored.pseudonym_bidx != "PSN-ROUND-1" and len(stored.pseudonym_bidx) == 64

    actions = [(e.action, e.outcome, e.case_id) for e in all_entries(backend)]
    assert actions == [
        ("case.create", "allowed", created.id),
        ("case.read", "allowed", created.id),
        ("case.list", "allowed", created.id),
        ("case.update", "allowed", created.id),
        ("case.update", "allowed", created.id),
        ("case.read", "allowed", created.id),
    ]
    assert backend.verify_audit().ok


def test_list_returns_only_what_authorize_allows(backend: State) -> None:
    mine = [new_case(backend, f"Case {i}") for i in range(4)]
    other_net = new_case(backend, "Elsewhere", owner="bob", network="ERN-OTHER")
    allowed_ids = {mine[0].id, mine[2].id}

    listed = backend.cases.list_cases(
        user="alice",
        network=None,
        authorize=lambda ref: Decision(ref.id in allowed_ids, ()),
        ctx=CTX,
    )
    assert [c.id for c in listed] == [mine[0].id, mine[2].id]
    assert [c.title for c in listed] == ["Case 0", "Case 2"]

    # only what was returned is audited as listed
    listed_entries = {e.case_id for e in all_entries(backend) if e.action == "case.list"}
    assert listed_entries == allowed_ids

    # a non-member sees nothing without a network; a coordinator sees the network's cases
    assert backend.cases.list_cases(user="carol", network=None, authorize=allow, ctx=CTX) == []
    coord = backend.cases.list_cases(user="carol", network="ERN-OTHER", authorize=allow, ctx=CTX)
    assert [c.id for c in coord] == [other_net.id]
    assert backend.cases.list_cases(user="alice", network=None, authorize=deny, ctx=CTX) == []


def test_lookup_by_pseudonym_uses_the_blind_index(backend: State) -> None:
    a = new_case(backend, "A", pseudonym="PSN-0001-Ådne")
    b = new_case(backend, "B", pseudonym="PSN-0002-Ådne")
    new_case(backend, "C")

    found = backend.cases.lookup_pseudonym("PSN-0001-Ådne", authorize=allow, ctx=CTX)
    assert [c.id for c in found] == [a.id]
    assert found[0].title == "A"
    # the index normalises case and surrounding blanks, not inner content
    assert [
        c.id for c in backend.cases.lookup_pseudonym("  psn-0002-ådne ", authorize=allow, ctx=CTX)
    ] == [b.id]
    assert backend.cases.lookup_pseudonym("PSN-0003-Ådne", authorize=allow, ctx=CTX) == []
    assert backend.cases.lookup_pseudonym("PSN-0001", authorize=allow, ctx=CTX) == []
    # a match the caller may not see is not returned
    assert backend.cases.lookup_pseudonym("PSN-0001-Ådne", authorize=deny, ctx=CTX) == []
    with pytest.raises(ValidationError):
        backend.cases.lookup_pseudonym("   ", authorize=allow, ctx=CTX)

    with backend.engine.connect() as conn:
        indexes = set(conn.execute(select(CaseRow.pseudonym_bidx)).scalars())
    assert backend.cases.blind_index.compute("PSN-0001-Ådne", purpose="pseudonym") in indexes
    assert not any("PSN" in (i or "") for i in indexes)


@pytest.mark.parametrize("action", ["case.read", "case.update", "file.list", "file.write"])
def test_denied_request_raises_with_reasons_and_is_audited(backend: State, action: str) -> None:
    case = new_case(backend, "Secret title")
    attempts = {
        "case.read": lambda: backend.cases.read_case(case.id, authorize=deny, ctx=CTX),
        "case.update": lambda: backend.cases.update_case(
            case.id, title="Overwritten", authorize=deny, ctx=CTX
        ),
        "file.list": lambda: backend.cases.list_files(case.id, authorize=deny, ctx=CTX),
        "file.write": lambda: backend.cases.add_file(
            case.id,
            iter([b"x" * 1000]),
            name="a.txt",
            media_type="text/plain",
            max_size=10_000,
            authorize=deny,
            ctx=CTX,
        ),
    }
    with pytest.raises(PermissionDeniedError) as info:
        within(5, attempts[action])
    assert info.value.reasons == ("not a member of the case", "token lacks cases:read")

    last = all_entries(backend)[-1]
    assert (last.action, last.outcome, last.case_id) == (action, "denied", case.id)
    assert (last.actor, last.client) == ("alice", "10.0.0.7")
    assert last.detail == "not a member of the case; token lacks cases:read"
    assert "Secret title" not in repr(last)
    # nothing changed: content, files and the chain
    assert backend.cases.read_case(case.id, authorize=allow, ctx=CTX).title == "Secret title"
    assert blob_files(backend) == []
    assert count(backend, select(func.count()).select_from(BlobRow)) == 0
    assert backend.verify_audit().ok


def test_not_found_for_unknown_and_malformed_ids(backend: State) -> None:
    case = new_case(backend)
    for bad in (str(uuid.uuid4()), "not-a-uuid", "", case.id.upper(), f"{case.id}' OR '1'='1"):
        with pytest.raises(NotFoundError):
            backend.cases.read_case(bad, authorize=allow, ctx=CTX)
        with pytest.raises(NotFoundError):
            backend.cases.update_case(bad, title="x", authorize=allow, ctx=CTX)
        with pytest.raises(NotFoundError):
            backend.cases.open_file(case.id, bad, authorize=allow, ctx=CTX)
        with pytest.raises(NotFoundError):
            backend.cases.erase_case(bad, ctx=CTX)
    with pytest.raises(NotFoundError):
        backend.cases.add_file(
            str(uuid.uuid4()),
            iter([b"x"]),
            name="a",
            media_type="text/plain",
            max_size=10,
            authorize=allow,
            ctx=CTX,
        )
    # a file of one case cannot be opened through another case
    other = new_case(backend, "Other")
    f = backend.cases.add_file(
        other.id,
        iter([b"data"]),
        name="a.txt",
        media_type="text/plain",
        max_size=100,
        authorize=allow,
        ctx=CTX,
    )
    with pytest.raises(NotFoundError):
        backend.cases.open_file(case.id, f.id, authorize=allow, ctx=CTX)
    assert backend.cases.read_case(case.id, authorize=allow, ctx=CTX).id == case.id


# -- files ---------------------------------------------------------------------------------


def test_file_streams_in_and_reads_back_identically(backend: State) -> None:
    case = new_case(backend)
    data = random.Random(20241127).randbytes(3 * 1024 * 1024 + 12345)
    meta = backend.cases.add_file(
        case.id,
        chunked(data),
        name="biopsy slide 1.svs",
        media_type="image/tiff",
        max_size=len(data),
        authorize=allow,
        ctx=CTX,
    )
    assert meta.size == len(data)
    assert meta.sha256 == hashlib.sha256(data).hexdigest()
    assert (meta.name, meta.media_type, meta.created_by) == (
        "biopsy slide 1.svs",
        "image/tiff",
        "alice",
    )

    [listed] = backend.cases.list_files(case.id, authorize=allow, ctx=CTX)
    assert listed == meta

    [on_disk] = blob_files(backend)
    assert on_disk.name == meta.id
    with backend.engine.connect() as conn:
        row = conn.execute(select(BlobRow).where(BlobRow.id == meta.id)).one()
    assert row.stored_size == on_disk.stat().st_size > len(data)
    assert data[1000:1064] not in on_disk.read_bytes()

    opened, reader = backend.cases.open_file(case.id, meta.id, authorize=allow, ctx=CTX)
    try:
        assert opened == meta
        assert reader.size == len(data)
        assert reader.read_all() == data
        rng = random.Random(7)
        seg = 64 * 1024
        ranges = [(0, 1), (seg - 1, 2), (seg, seg), (len(data) - 5, 100), (len(data), 10)]
        ranges += [(rng.randrange(len(data)), rng.randrange(1, 300_000)) for _ in range(60)]
        for offset, length in ranges:
            assert reader.read_at(offset, length) == data[offset : offset + length], (
                offset,
                length,
            )
    finally:
        reader.close()

    # exactly max_size is accepted (the limit is inclusive)
    small = backend.cases.add_file(
        case.id,
        iter([b"12345"]),
        name="five.txt",
        media_type="text/plain",
        max_size=5,
        authorize=allow,
        ctx=CTX,
    )
    assert small.size == 5
    assert len(blob_files(backend)) == 2


def _failing_upload() -> Iterator[bytes]:
    yield os.urandom(200_000)
    yield os.urandom(200_000)
    raise ConnectionResetError("client went away mid-upload")


UPLOADS = {
    "empty": (lambda: iter([]), 1000, ValidationError),
    "only-empty-chunks": (lambda: iter([b"", b""]), 1000, ValidationError),
    "one-byte-too-large": (lambda: chunked(b"x" * 100_001, (40_000,)), 100_000, ValidationError),
    "far-too-large": (lambda: chunked(os.urandom(500_000), (64 * 1024,)), 70_000, ValidationError),
    "iterator-raises-halfway": (_failing_upload, 10_000_000, ConnectionResetError),
}


@pytest.mark.parametrize("upload", list(UPLOADS))
def test_rejected_upload_leaves_nothing_behind(backend: State, upload: str) -> None:
    make_chunks, max_size, error = UPLOADS[upload]
    case = new_case(backend)
    entries_before = len(all_entries(backend))

    with pytest.raises(error):
        backend.cases.add_file(
            case.id,
            make_chunks(),
            name="scan.dcm",
            media_type="application/dicom",
            max_size=max_size,
            authorize=allow,
            ctx=CTX,
        )

    assert blob_files(backend) == []  # neither a final blob nor a .partial one
    assert count(backend, select(func.count()).select_from(BlobRow)) == 0
    assert backend.cases.list_files(case.id, authorize=allow, ctx=CTX) == []
    assert not any(e.action == "file.write" for e in all_entries(backend)[entries_before:])
    assert backend.verify_audit().ok


# -- erasure -------------------------------------------------------------------------------


def test_erase_case_crypto_shreds_everything_but_the_audit_trail(backend: State) -> None:
    victim = new_case(backend, "ERASE-ME title", "ERASE-ME summary", pseudonym="ERASE-ME-PSN")
    keeper = new_case(backend, "Keep me", pseudonym="KEEP-PSN")
    files = [
        backend.cases.add_file(
            victim.id,
            iter([os.urandom(150_000)]),
            name=f"ERASE-ME-{i}.png",
            media_type="image/png",
            max_size=10**6,
            authorize=allow,
            ctx=CTX,
        )
        for i in range(2)
    ]
    kept_file = backend.cases.add_file(
        keeper.id,
        iter([b"keep" * 1000]),
        name="keep.txt",
        media_type="text/plain",
        max_size=10**6,
        authorize=allow,
        ctx=CTX,
    )
    with backend.engine.connect() as conn:
        title_copy = conn.execute(
            select(CaseRow.title_enc).where(CaseRow.id == victim.id)
        ).scalar_one()
        victim_wrapped = conn.execute(
            select(DataKeyRow.wrapped).where(DataKeyRow.id == f"case:{victim.id}")
        ).scalar_one()
    where = {"table": "cases", "row_id": victim.id, "field": "title"}
    # control: the victim's own key does open the copy, so the check below is meaningful
    victim_key = backend.keyring.unwrap(victim_wrapped, context=f"case:{victim.id}")
    assert FieldCipher(victim_key).decrypt_text(title_copy, **where) == "ERASE-ME title"

    assert backend.cases.erase_case(victim.id, ctx=AuditContext("dpo", "cli")) == 2

    with pytest.raises(NotFoundError):
        backend.cases.read_case(victim.id, authorize=allow, ctx=CTX)
    for f in files:
        with pytest.raises(NotFoundError):
            backend.cases.open_file(victim.id, f.id, authorize=allow, ctx=CTX)
    assert backend.cases.lookup_pseudonym("ERASE-ME-PSN", authorize=allow, ctx=CTX) == []
    with pytest.raises(KeyUnavailableError):
        with backend.sessions() as s:
            backend.keys.get(s, f"case:{victim.id}")

    with backend.engine.connect() as conn:
        assert conn.execute(select(CaseRow).where(CaseRow.id == victim.id)).first() is None
        assert (
            conn.execute(select(DataKeyRow).where(DataKeyRow.id == f"case:{victim.id}")).first()
            is None
        )
        assert conn.execute(select(BlobRow).where(BlobRow.case_id == victim.id)).first() is None
        assert (
            conn.execute(select(CaseMemberRow).where(CaseMemberRow.case_id == victim.id)).first()
            is None
        )
        remaining = conn.execute(select(DataKeyRow.id, DataKeyRow.wrapped)).all()
    assert [p.name for p in blob_files(backend)] == [kept_file.id]

    # the ciphertext copy (a backup, say) opens under no key that is left
    assert remaining, "the surviving case still has a key"
    for key_id, wrapped in remaining:
        cipher = FieldCipher(backend.keyring.unwrap(wrapped, context=key_id))
        with pytest.raises(IntegrityError):
            cipher.decrypt_text(title_copy, **where)

    # the survivor is untouched
    kept = backend.cases.read_case(keeper.id, authorize=allow, ctx=CTX)
    assert kept.title == "Keep me"
    _, reader = backend.cases.open_file(keeper.id, kept_file.id, authorize=allow, ctx=CTX)
    with reader:
        assert reader.read_all() == b"keep" * 1000

    # the victim's audit entries stay, and say nothing about its content
    with backend.sessions() as s:
        trail = list(reversed(backend.audit.entries(s, case_id=victim.id)))
    assert [e.action for e in trail] == ["case.create", "file.write", "file.write", "case.erase"]
    assert (trail[-1].actor, trail[-1].client, trail[-1].detail) == ("dpo", "cli", "blobs=2")
    assert not any("ERASE-ME" in repr(e) for e in trail)
    assert backend.verify_audit().ok

    with pytest.raises(NotFoundError):
        backend.cases.erase_case(victim.id, ctx=CTX)


# -- keys ----------------------------------------------------------------------------------


def test_rotation_rewraps_every_data_key_and_old_cases_stay_readable(backend: State) -> None:
    cases = [new_case(backend, f"Rotated {i}", pseudonym=f"ROT-{i}") for i in range(3)]
    payload = os.urandom(100_000)
    f = backend.cases.add_file(
        cases[0].id,
        iter([payload]),
        name="x.bin",
        media_type="application/octet-stream",
        max_size=10**6,
        authorize=allow,
        ctx=CTX,
    )
    old_primary = backend.keyring.primary_id
    with backend.engine.connect() as conn:
        before = dict(conn.execute(select(DataKeyRow.id, DataKeyRow.wrapped)).all())
    assert len(before) == 3

    assert backend.rotate_keys() == 3
    new_primary = backend.keyring.primary_id
    assert new_primary != old_primary
    with backend.engine.connect() as conn:
        after = conn.execute(select(DataKeyRow.id, DataKeyRow.wrapped, DataKeyRow.kek_id)).all()
    assert {row.kek_id for row in after} == {new_primary}
    assert all(backend.keyring.wrapped_key_id(row.wrapped) == new_primary for row in after)
    assert all(before[row.id] != row.wrapped for row in after)

    def check(state: State) -> None:
        for i, c in enumerate(cases):
            assert state.cases.read_case(c.id, authorize=allow, ctx=CTX).title == f"Rotated {i}"
        assert [c.id for c in state.cases.lookup_pseudonym("ROT-1", authorize=allow, ctx=CTX)] == [
            cases[1].id
        ]
        _, reader = state.cases.open_file(cases[0].id, f.id, authorize=allow, ctx=CTX)
        with reader:
            assert reader.read_all() == payload

    check(backend)
    fresh = open_state(backend.settings)
    try:
        check(fresh)
    finally:
        fresh.close()

    # the old KEK can now be retired: a key file holding only the new primary reads it all
    document = json.loads(Path(backend.settings.key_file).read_text())
    assert [k["id"] for k in document["keks"]] == [new_primary, old_primary]
    document["keks"] = document["keks"][:1]
    retired = Path(backend.settings.key_file).with_name("only-new.json")
    fd = os.open(retired, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(document, fh)
    only_new = open_state(
        CpmsSettings(
            state_dir=backend.settings.state_dir,
            db_url=backend.settings.db_url,
            key_file=str(retired),
            blob_dir=backend.settings.blob_dir,
        )
    )
    try:
        check(only_new)
    finally:
        only_new.close()

    # nothing left to move: a second rotation moves the same keys once more, no more
    later = new_case(backend, "After rotation")
    assert backend.rotate_keys() == 4
    assert backend.cases.read_case(later.id, authorize=allow, ctx=CTX).title == "After rotation"
    rotations = [e for e in all_entries(backend) if e.action == "keys.rotate"]
    assert len(rotations) == 2 and rotations[0].detail.startswith("rewrapped=3 ")
    assert backend.verify_audit().ok


# -- tampering -----------------------------------------------------------------------------


def test_ciphertext_moved_to_another_row_fails_to_decrypt(backend: State) -> None:
    a = new_case(backend, "Title of A", "Summary of A")
    b = new_case(backend, "Title of B", "Summary of B")
    with backend.engine.begin() as conn:
        a_title = conn.execute(select(CaseRow.title_enc).where(CaseRow.id == a.id)).scalar_one()
        conn.execute(update(CaseRow).where(CaseRow.id == b.id).values(title_enc=a_title))

    with pytest.raises(IntegrityError) as info:
        backend.cases.read_case(b.id, authorize=allow, ctx=CTX)
    assert "Title of A" not in str(info.value)
    with pytest.raises(IntegrityError):
        backend.cases.list_cases(user="alice", network=None, authorize=allow, ctx=CTX)
    assert backend.cases.read_case(a.id, authorize=allow, ctx=CTX).title == "Title of A"

    # within one row, swapping fields fails too (the field name is bound)
    with backend.engine.begin() as conn:
        row = conn.execute(select(CaseRow).where(CaseRow.id == a.id)).one()
        conn.execute(
            update(CaseRow)
            .where(CaseRow.id == a.id)
            .values(title_enc=row.summary_enc, summary_enc=row.title_enc)
        )
    with pytest.raises(IntegrityError):
        backend.cases.read_case(a.id, authorize=allow, ctx=CTX)


def test_ciphertext_under_another_cases_key_fails(backend: State) -> None:
    """A wrapped data key swapped between cases is refused (bound to its case id)."""
    a = new_case(backend, "A")
    b = new_case(backend, "B")
    with backend.engine.begin() as conn:
        wrapped_a = conn.execute(
            select(DataKeyRow.wrapped).where(DataKeyRow.id == f"case:{a.id}")
        ).scalar_one()
        conn.execute(delete(DataKeyRow).where(DataKeyRow.id == f"case:{b.id}"))
        conn.execute(
            DataKeyRow.__table__.insert().values(
                id=f"case:{b.id}",
                wrapped=wrapped_a,
                kek_id=backend.keyring.primary_id,
                created_at=b.created_at,
            )
        )
    with pytest.raises(IntegrityError):
        backend.cases.read_case(b.id, authorize=allow, ctx=CTX)


@pytest.mark.parametrize("where", ["first-segment", "middle-segment", "last-segment", "header"])
def test_flipped_bit_in_a_blob_is_detected(backend: State, where: str) -> None:
    case = new_case(backend)
    seg = 64 * 1024
    data = os.urandom(4 * seg + 999)  # five segments, the last one short
    meta = backend.cases.add_file(
        case.id,
        chunked(data),
        name="x.bin",
        media_type="application/octet-stream",
        max_size=len(data),
        authorize=allow,
        ctx=CTX,
    )
    [path] = blob_files(backend)
    stored = seg + 16
    position = {
        "first-segment": HEADER_SIZE + 100,
        "middle-segment": HEADER_SIZE + 2 * stored + 5,
        "last-segment": path.stat().st_size - 3,
        "header": 9,
    }[where]
    raw = bytearray(path.read_bytes())
    raw[position] ^= 0x04
    path.write_bytes(bytes(raw))

    if where in ("last-segment", "header"):
        # opening authenticates the header and the final segment at once
        with pytest.raises(IntegrityError):
            backend.cases.open_file(case.id, meta.id, authorize=allow, ctx=CTX)
        return
    _, reader = backend.cases.open_file(case.id, meta.id, authorize=allow, ctx=CTX)
    with reader:
        with pytest.raises(IntegrityError):
            reader.read_all()
        # segments that were not touched still read (random access authenticates per segment)
        assert reader.read_at(3 * seg, 1000) == data[3 * seg : 3 * seg + 1000]
