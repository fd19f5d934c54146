"""The case store: the only code that encrypts and decrypts case content.

Every method is one transaction that also appends the audit entries for what
it did. Policy stays outside (in the service): read and write methods take an
``authorize`` callback that sees only a :class:`~cpms_hub.domain.CaseRef`
(no clinical content) and returns a decision; a denial is audited and raised
before anything is decrypted. Content fields are AEAD-encrypted under the
case's own data key with associated data naming table, row, field and schema
version; pseudonyms are also kept as blind indexes for exact look-ups.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Protocol

from sqlalchemy import and_, delete, func, literal, or_, select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from cpms_hub.crypto import BlindIndex, FieldCipher
from cpms_hub.crypto.segmented import DEFAULT_SEGMENT_SIZE, SegmentedReader, SegmentedWriter
from cpms_hub.domain import (
    Case,
    CaseContent,
    CaseDraft,
    CaseFile,
    CaseMember,
    CaseRef,
    CaseStatus,
    ConflictError,
    Consent,
    ConsentScope,
    MemberRole,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)
from cpms_hub.domain.audit import AuditOutcome
from cpms_hub.domain.codec import (
    consent_from_json,
    consent_to_json,
    content_from_json,
    content_to_json,
)
from cpms_hub.domain.consent import FORM_MEDIA_TYPES, Withdrawal, looks_like
from cpms_hub.domain.errors import KeyUnavailableError
from cpms_hub.domain.review import LifecycleAction, transition

from .audit import AuditTrail
from .audit_commit import AuditGroupCommit
from .blobs import LocalBlobBackend
from .case_reads import fetch_case
from .database import TRANSACTION_MEMO, session_scope
from .keys import DataKeys, case_key_id
from .schema import SCHEMA_VERSION, BlobRow, CaseMemberRow, CaseRow, ConsentRow
from .sqlite_reads import read_statements

__all__ = ["CaseStore", "AuditContext", "Verdict"]


class Verdict(Protocol):
    """What an ``authorize`` callback returns (a policy Decision fits)."""

    allowed: bool
    reasons: tuple[str, ...]


Authorize = Callable[[CaseRef], Verdict]


@dataclass(frozen=True, slots=True)
class AuditContext:
    """Who is acting and from where, for the audit trail."""

    actor: str
    client: str = ""


def _listed(column, scope: ConsentScope):  # noqa: ANN001, ANN202 - SQL expressions
    # scopes are stored comma-separated: bracket them so one name never matches inside another
    return (literal(",") + column + literal(",")).like(f"%,{scope.value},%")


def consent_granted(scope: ConsentScope):  # noqa: ANN201 - a SELECT of case ids
    """Case ids whose latest consent record grants ``scope`` and has not withdrawn it."""
    latest = (
        select(ConsentRow.case_id, func.max(ConsentRow.recorded_at).label("at"))
        .group_by(ConsentRow.case_id)
        .subquery()
    )
    return (
        select(ConsentRow.case_id)
        .join(
            latest,
            and_(ConsentRow.case_id == latest.c.case_id, ConsentRow.recorded_at == latest.c.at),
        )
        .where(_listed(ConsentRow.scopes, scope), ~_listed(ConsentRow.withdrawn, scope))
    )


def _utc(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _scopes(text: str) -> frozenset[ConsentScope]:
    return frozenset(ConsentScope(s) for s in text.split(",") if s)


def _ref(row: CaseRow) -> CaseRef:
    consent = withdrawn = frozenset()
    if row.consents:
        latest = max(row.consents, key=lambda c: c.recorded_at)
        withdrawn = _scopes(latest.withdrawn)
        consent = _scopes(latest.scopes) - withdrawn
    return CaseRef(
        id=row.id,
        owner=row.owner,
        hospital=row.hospital,
        network=row.network,
        status=CaseStatus(row.status),
        created_at=_utc(row.created_at),
        updated_at=_utc(row.updated_at),
        members=tuple(
            CaseMember(m.user, MemberRole(m.role), _utc(m.added_at))
            for m in sorted(row.members, key=lambda m: (m.added_at, m.user))
        ),
        consent=consent,
        consent_withdrawn=withdrawn,
    )


def _case_of(
    ref: CaseRef,
    cipher: FieldCipher,
    title_enc: bytes,
    summary_enc: bytes,
    content_enc: bytes | None,
    schema_version: int,
) -> Case:
    """The decrypted case of a stored row (ORM row or :class:`~.case_reads.CaseSnapshot`)."""
    ad = {"table": "cases", "row_id": ref.id, "schema_version": schema_version}
    return Case(
        id=ref.id,
        owner=ref.owner,
        hospital=ref.hospital,
        network=ref.network,
        status=ref.status,
        title=cipher.decrypt_text(title_enc, field="title", **ad),
        clinical_summary=cipher.decrypt_text(summary_enc, field="summary", **ad),
        created_at=ref.created_at,
        updated_at=ref.updated_at,
        members=ref.members,
        consent=ref.consent,
        consent_withdrawn=ref.consent_withdrawn,
        content=(
            content_from_json(json.loads(cipher.decrypt(content_enc, field="content", **ad)))
            if content_enc is not None
            else None
        ),
    )


@dataclass(frozen=True, slots=True)
class _CaseRead:
    """A read decided and decrypted, with the audit entry it owes before it is answered."""

    case_id: str
    case: Case | None  # None: refused for ``reasons``
    reasons: tuple[str, ...]

    def entry(self, ctx: AuditContext) -> dict:
        denied = self.case is None
        return {
            "actor": ctx.actor,
            "action": "case.read",
            "outcome": AuditOutcome.DENIED if denied else AuditOutcome.ALLOWED,
            "client": ctx.client,
            "case_id": self.case_id,
            **({"detail": "; ".join(self.reasons)[:500]} if denied else {}),
        }

    def result(self) -> Case:
        if self.case is None:
            raise PermissionDeniedError("not allowed", reasons=self.reasons)
        return self.case


class CaseStore:
    """Cases, their files and their keys, over one database and one blob backend."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        data_keys: DataKeys,
        blind_index: BlindIndex,
        blobs: LocalBlobBackend,
        audit: AuditTrail,
    ) -> None:
        self.sessions = session_factory
        self.keys = data_keys
        self.blind_index = blind_index
        self.blobs = blobs
        self.audit = audit
        #: audit entries of reads, committed in groups (see :mod:`.audit_commit`)
        self.audit_commit = AuditGroupCommit(audit, session_factory)

    # -- helpers -----------------------------------------------------------

    def _cipher(self, session: Session, case_id: str) -> FieldCipher:
        """The case's cipher, its data key read once per transaction (not once per row).

        Listings decrypt one row after another of the same case (DICOM headers,
        annotations, messages): remembered in the session, the key is selected
        once, not once a row, and still re-read by the next transaction, so a key
        destroyed by another process stops the very next one.
        """
        memo = session.info.setdefault(TRANSACTION_MEMO, {})
        key_id = case_key_id(case_id)
        cipher = memo.get(key_id)
        if cipher is None:
            cipher = memo[key_id] = self.keys.cipher(session, key_id)
        return cipher

    def _decrypt_case(self, session: Session, row: CaseRow) -> Case:
        return _case_of(
            _ref(row),
            self._cipher(session, row.id),
            row.title_enc,
            row.summary_enc,
            row.content_enc,
            row.schema_version,
        )

    def _row(self, session: Session, case_id: str) -> CaseRow:
        row = session.get(CaseRow, case_id) if _is_uuid(case_id) else None
        if row is None:
            raise NotFoundError("no such case")
        return row

    def _check(
        self,
        session: Session,
        row: CaseRow,
        authorize: Authorize,
        ctx: AuditContext,
        action: str,
    ) -> CaseRef:
        ref = _ref(row)
        verdict = authorize(ref)
        if not verdict.allowed:
            # audit in this same transaction: a second one would wait on our own write lock
            self._denied(session, ctx, action, row.id, verdict.reasons)
            session.commit()
            raise PermissionDeniedError("not allowed", reasons=tuple(verdict.reasons))
        return ref

    def _allowed(
        self, s: Session, ctx: AuditContext, action: str, case_id: str, *, detail: str = ""
    ) -> None:
        """Audit an allowed action in the transaction that carries it out."""
        self.audit.append(
            s,
            actor=ctx.actor,
            action=action,
            outcome=AuditOutcome.ALLOWED,
            client=ctx.client,
            case_id=case_id,
            detail=detail,
        )

    def _denied(
        self,
        s: Session,
        ctx: AuditContext,
        action: str,
        case_id: str | None,
        reasons: tuple[str, ...],
    ) -> None:
        """Audit a refusal in ``s`` (no patient data: the reasons name rules and people)."""
        self.audit.append(
            s,
            actor=ctx.actor,
            action=action,
            outcome=AuditOutcome.DENIED,
            client=ctx.client,
            case_id=case_id,
            detail="; ".join(reasons)[:500],
        )

    def record_denial(
        self, ctx: AuditContext, action: str, reasons: tuple[str, ...], case_id: str | None = None
    ) -> None:
        """Audit a request refused before it reached a case, then raise."""
        with session_scope(self.sessions) as s:
            self._denied(s, ctx, action, case_id, reasons)
        raise PermissionDeniedError("not allowed", reasons=reasons)

    # -- cases -------------------------------------------------------------

    def create_case(
        self,
        draft: CaseDraft,
        *,
        owner: str,
        hospital: str,
        network: str,
        ctx: AuditContext,
        pseudonym: str | None = None,
        content: CaseContent | None = None,
    ) -> Case:
        """A new draft owned by ``owner``; with ``content``, in the same transaction."""
        if content is not None and content.patient is not None:
            pseudonym = content.patient.pseudonym
        if pseudonym is not None and (not pseudonym.strip() or len(pseudonym) > 128):
            raise ValidationError("pseudonym", "must be 1-128 characters")
        case_id = str(uuid.uuid4())
        now = datetime.now(UTC)
        with session_scope(self.sessions) as s:
            cipher = FieldCipher(self.keys.create(s, case_key_id(case_id)))
            ad = {"table": "cases", "row_id": case_id, "schema_version": SCHEMA_VERSION}
            row = CaseRow(
                id=case_id,
                owner=owner,
                hospital=hospital,
                network=draft.network or network,
                status=CaseStatus.DRAFT.value,
                title_enc=cipher.encrypt(draft.title, field="title", **ad),
                summary_enc=cipher.encrypt(draft.clinical_summary, field="summary", **ad),
                pseudonym_enc=(
                    cipher.encrypt(pseudonym, field="pseudonym", **ad) if pseudonym else None
                ),
                pseudonym_bidx=(
                    self.blind_index.compute(pseudonym, purpose="pseudonym") if pseudonym else None
                ),
                schema_version=SCHEMA_VERSION,
                created_at=now,
                updated_at=now,
            )
            row.members.append(
                CaseMemberRow(case_id=case_id, user=owner, role=MemberRole.OWNER, added_at=now)
            )
            if content is not None:
                payload = json.dumps(content_to_json(content), separators=(",", ":"))
                row.content_enc = cipher.encrypt(payload, field="content", **ad)
            s.add(row)
            s.flush()
            self._allowed(s, ctx, "case.create", case_id)
            return self._decrypt_case(s, row)

    def read_case(self, case_id: str, *, authorize: Authorize, ctx: AuditContext) -> Case:
        """One case, decrypted, if ``authorize`` allows; the read is audited either way.

        The hot path of the service: one statement in a read-only transaction
        (:mod:`.case_reads`), no write lock while reading and decrypting, then
        the audit entry through :class:`~.audit_commit.AuditGroupCommit`, which
        returns only once the entry is committed: nothing is answered unaudited.
        """
        read = self._read(case_id, authorize)
        self.audit_commit.record(**read.entry(ctx))
        return read.result()

    async def read_case_async(
        self, case_id: str, *, authorize: Authorize, ctx: AuditContext
    ) -> Case:
        """:meth:`read_case` for a caller on an event loop, with SQLite underneath.

        The statement and the decryption run on the caller's thread (in SQLite's
        WAL mode a reader never waits for a writer: a read is a few page-cache
        look-ups, cheaper than handing it to a thread), and the audit entry is
        awaited through :meth:`~.audit_commit.AuditGroupCommit.record_async`, so
        the loop never blocks on the writer. With a database server underneath
        use :meth:`read_case` in a worker thread: its statements wait on the network.
        """
        read = self._read(case_id, authorize)
        await self.audit_commit.record_async(**read.entry(ctx))
        return read.result()

    def _read(self, case_id: str, authorize: Authorize) -> _CaseRead:
        snap = None
        if _is_uuid(case_id):
            # on a SQLite file one autocommit SELECT through the driver, else a Core read
            with read_statements(self.sessions) as source:
                snap = fetch_case(source, case_id)
        if snap is None:
            raise NotFoundError("no such case")
        verdict = authorize(snap.ref)
        if not verdict.allowed:
            return _CaseRead(case_id, None, tuple(verdict.reasons))
        if snap.wrapped_key is None:
            raise KeyUnavailableError("data key case is not available")
        cipher = FieldCipher(self.keys.from_wrapped(case_key_id(case_id), snap.wrapped_key))
        case = _case_of(
            snap.ref,
            cipher,
            snap.title_enc,
            snap.summary_enc,
            snap.content_enc,
            snap.schema_version,
        )
        return _CaseRead(case_id, case, ())

    def list_cases(
        self, *, user: str, network: str | None, authorize: Authorize, ctx: AuditContext
    ) -> list[Case]:
        """Cases ``user`` is a member of (and of ``network``, for coordinators) that pass."""
        with session_scope(self.sessions) as s:
            cases = []
            for row in self._listable(s, user, network):
                if not authorize(_ref(row)).allowed:
                    continue
                cases.append(self._decrypt_case(s, row))
                self._allowed(s, ctx, "case.list", row.id)
            return cases

    def list_fingerprint(self, *, user: str, network: str | None, authorize: Authorize) -> str:
        """A fingerprint of what :meth:`list_cases` would answer now (an ETag for the list).

        It changes whenever a listed case does in a way the list shows: a case comes or
        goes, or its status, ``updated_at`` (every edit of title, summary or content bumps
        it), members or consent change. It is made from clear columns (ids, states,
        times, user names, consent scopes), nothing is decrypted and no patient data is
        read, so it is not audited; a list fetched because the fingerprint changed is,
        case by case, as always. Lets a client that polls the list (the JupyterLab case
        desk) skip the listing, and its audit entry per case, while nothing changed.
        """
        digest = hashlib.sha256()
        with session_scope(self.sessions) as s:
            for row in self._listable(s, user, network):
                ref = _ref(row)
                if not authorize(ref).allowed:
                    continue
                seen = [
                    ref.id,
                    ref.status.value,
                    ref.updated_at.isoformat(),
                    sorted((m.user, m.role.value) for m in ref.members),
                    sorted(c.value for c in ref.consent),
                    sorted(c.value for c in ref.consent_withdrawn),
                ]
                digest.update(json.dumps(seen).encode() + b"\n")
        return digest.hexdigest()[:32]

    @staticmethod
    def _listable(s: Session, user: str, network: str | None) -> list[CaseRow]:
        """The rows :meth:`list_cases` considers, oldest first (before the policy's say)."""
        member_ids = select(CaseMemberRow.case_id).where(CaseMemberRow.user == user)
        cond = CaseRow.id.in_(member_ids)
        if network is not None:
            cond = or_(cond, CaseRow.network == network)
        # members and consents with two queries in all, not two per case (the policy reads both)
        stmt = (
            select(CaseRow)
            .where(cond)
            .options(selectinload(CaseRow.members), selectinload(CaseRow.consents))
            .order_by(CaseRow.created_at)
        )
        return list(s.scalars(stmt).all())

    def lookup_pseudonym(
        self, pseudonym: str, *, authorize: Authorize, ctx: AuditContext
    ) -> list[Case]:
        """Exact look-up by patient pseudonym through its blind index."""
        if not isinstance(pseudonym, str) or not pseudonym.strip():
            raise ValidationError("pseudonym", "must not be empty")
        bidx = self.blind_index.compute(pseudonym, purpose="pseudonym")
        with session_scope(self.sessions) as s:
            rows = s.scalars(select(CaseRow).where(CaseRow.pseudonym_bidx == bidx)).all()
            found = []
            for row in rows:
                if authorize(_ref(row)).allowed:
                    found.append(self._decrypt_case(s, row))
                    self._allowed(s, ctx, "case.lookup", row.id)
            return found

    def update_case(
        self,
        case_id: str,
        *,
        title: str | None = None,
        clinical_summary: str | None = None,
        authorize: Authorize,
        ctx: AuditContext,
    ) -> Case:
        with session_scope(self.sessions) as s:
            row = self._row(s, case_id)
            self._check(s, row, authorize, ctx, "case.update")
            current = self._decrypt_case(s, row)
            draft = CaseDraft(
                title=current.title if title is None else title,
                clinical_summary=(
                    current.clinical_summary if clinical_summary is None else clinical_summary
                ),
            )
            cipher = self._cipher(s, case_id)
            ad = {"table": "cases", "row_id": case_id, "schema_version": row.schema_version}
            row.title_enc = cipher.encrypt(draft.title, field="title", **ad)
            row.summary_enc = cipher.encrypt(draft.clinical_summary, field="summary", **ad)
            row.updated_at = datetime.now(UTC)
            fields = [n for n, v in (("title", title), ("summary", clinical_summary)) if v]
            self._allowed(s, ctx, "case.update", case_id, detail="fields=" + ",".join(fields))
            s.flush()
            return self._decrypt_case(s, row)

    def add_member(
        self, case_id: str, user: str, role: MemberRole, *, ctx: AuditContext
    ) -> CaseRef:
        """Add ``user`` to the case (operators and seeding; panels build on this)."""
        with session_scope(self.sessions) as s:
            row = self._row(s, case_id)
            if any(m.user == user for m in row.members):
                raise ValidationError("user", "is already a member of the case")
            row.members.append(
                CaseMemberRow(
                    case_id=case_id, user=user, role=role.value, added_at=datetime.now(UTC)
                )
            )
            self._allowed(
                s, ctx, "case.member.add", case_id, detail=f"user={user} role={role.value}"
            )
            s.flush()
            return _ref(row)

    def set_status(
        self, case_id: str, status: CaseStatus, *, ctx: AuditContext, at: datetime | None = None
    ) -> CaseRef:
        """Set the status without lifecycle checks (operators and seeding only).

        ``at`` back-dates the milestone it marks (seeding demo and test histories).
        """
        with session_scope(self.sessions) as s:
            row = self._row(s, case_id)
            previous = row.status
            row.status = status.value
            now = datetime.now(UTC)
            row.updated_at = now
            _mark_milestone(row, status, at or now)
            self._allowed(s, ctx, "case.status", case_id, detail=f"{previous}->{status.value}")
            s.flush()
            return _ref(row)

    # -- clinical content, consent, submission ----------------------------

    def set_content(
        self, case_id: str, content: CaseContent, *, authorize: Authorize, ctx: AuditContext
    ) -> Case:
        """Replace the case's clinical content (and its pseudonym's blind index)."""
        with session_scope(self.sessions) as s:
            row = self._row(s, case_id)
            self._check(s, row, authorize, ctx, "case.content")
            cipher = self._cipher(s, case_id)
            ad = {"table": "cases", "row_id": case_id, "schema_version": row.schema_version}
            payload = json.dumps(content_to_json(content), separators=(",", ":"))
            row.content_enc = cipher.encrypt(payload, field="content", **ad)
            if content.patient is not None:
                pseudonym = content.patient.pseudonym
                row.pseudonym_enc = cipher.encrypt(pseudonym, field="pseudonym", **ad)
                row.pseudonym_bidx = self.blind_index.compute(pseudonym, purpose="pseudonym")
            row.updated_at = datetime.now(UTC)
            self._allowed(s, ctx, "case.content", case_id)
            s.flush()
            return self._decrypt_case(s, row)

    def _consents(self, s: Session, row: CaseRow) -> list[Consent]:
        cipher = self._cipher(s, row.id)
        return [
            consent_from_json(
                json.loads(
                    cipher.decrypt(c.payload_enc, table="consents", row_id=c.id, field="payload")
                )
            )
            for c in sorted(row.consents, key=lambda c: c.recorded_at)
        ]

    def _store_consent(self, s: Session, consent: Consent, row: ConsentRow | None) -> ConsentRow:
        cipher = self._cipher(s, consent.case_id)
        payload = json.dumps(consent_to_json(consent), separators=(",", ":"))
        if row is None:
            row = ConsentRow(
                id=consent.id, case_id=consent.case_id, recorded_at=consent.recorded_at
            )
            s.add(row)
        row.scopes = ",".join(sorted(x.value for x in consent.scopes))
        row.withdrawn = ",".join(sorted(w.scope.value for w in consent.withdrawals))
        row.payload_enc = cipher.encrypt(
            payload, table="consents", row_id=consent.id, field="payload"
        )
        return row

    def _check_form(self, s: Session, case_id: str, file_id: str) -> None:
        blob = s.get(BlobRow, file_id) if _is_uuid(file_id) else None
        if blob is None or blob.case_id != case_id:
            raise ValidationError("form_file_id", "is not a file of this case")
        if blob.media_type not in FORM_MEDIA_TYPES:
            allowed = ", ".join(sorted(FORM_MEDIA_TYPES))
            raise ValidationError("form_file_id", f"the signed form must be one of {allowed}")
        key = self.keys.get(s, case_key_id(case_id))
        with self.blobs.open(file_id) as fh, SegmentedReader(key, fh, blob_id=file_id) as reader:
            head = reader.read_at(0, 8)
        if not looks_like(head, blob.media_type):
            raise ValidationError(
                "form_file_id", f"the file's content does not match its type {blob.media_type}"
            )

    def record_consent(
        self,
        case_id: str,
        *,
        scopes: frozenset[ConsentScope],
        form_version: str,
        language: str,
        signed_on: date,
        form_file_id: str | None,
        authorize: Authorize,
        ctx: AuditContext,
    ) -> Consent:
        with session_scope(self.sessions) as s:
            row = self._row(s, case_id)
            self._check(s, row, authorize, ctx, "consent.record")
            if form_file_id is not None:
                self._check_form(s, case_id, form_file_id)
            consent = Consent(
                id=str(uuid.uuid4()),
                case_id=case_id,
                scopes=frozenset(scopes),
                form_version=form_version,
                language=language,
                signed_on=signed_on,
                recorded_by=ctx.actor,
                recorded_at=datetime.now(UTC),
                form_file_id=form_file_id,
            )
            self._store_consent(s, consent, None)
            self._allowed(
                s,
                ctx,
                "consent.record",
                case_id,
                detail="scopes=" + ",".join(sorted(x.value for x in consent.scopes)),
            )
            return consent

    def list_consents(
        self, case_id: str, *, authorize: Authorize, ctx: AuditContext
    ) -> list[Consent]:
        with session_scope(self.sessions) as s:
            row = self._row(s, case_id)
            self._check(s, row, authorize, ctx, "consent.read")
            consents = self._consents(s, row)
            self._allowed(s, ctx, "consent.read", case_id)
            return consents

    def withdraw_consent(
        self,
        case_id: str,
        consent_id: str,
        *,
        scope: ConsentScope,
        reason: str,
        on: date,
        authorize: Authorize,
        ctx: AuditContext,
    ) -> Consent:
        """Record the withdrawal of one scope; from then on that use stops."""
        if not reason.strip() or len(reason) > 1000:
            raise ValidationError("reason", "must be 1-1000 characters")
        if on > date.today():
            raise ValidationError("on", "cannot be in the future")
        with session_scope(self.sessions) as s:
            row = self._row(s, case_id)
            self._check(s, row, authorize, ctx, "consent.withdraw")
            crow = next((c for c in row.consents if c.id == consent_id), None)
            if crow is None:
                raise NotFoundError("no such consent record in this case")
            consent = next(c for c in self._consents(s, row) if c.id == consent_id)
            if scope not in consent.scopes:
                raise ValidationError("scope", f"{scope.value} was not granted by this consent")
            if scope not in consent.active_scopes():
                raise ConflictError(
                    "already withdrawn", reasons=(f"{scope.value} is already withdrawn",)
                )
            withdrawal = Withdrawal(scope, on, reason, ctx.actor, datetime.now(UTC))
            consent = Consent(
                **{
                    **{f: getattr(consent, f) for f in Consent.__dataclass_fields__},
                    "withdrawals": (*consent.withdrawals, withdrawal),
                }
            )
            self._store_consent(s, consent, crow)
            self._allowed(s, ctx, "consent.withdraw", case_id, detail=f"scope={scope.value}")
            return consent

    def submit(
        self,
        case_id: str,
        *,
        problems: Callable[[Case, list[Consent], list[CaseFile]], list[str]],
        authorize: Authorize,
        ctx: AuditContext,
    ) -> Case:
        """Draft → submitted, if ``problems`` finds none; else every problem, nothing changed."""
        with session_scope(self.sessions) as s:
            row = self._row(s, case_id)
            self._check(s, row, authorize, ctx, "case.submit")
            # the one lifecycle table decides (409 with the reason)
            transition(CaseStatus(row.status), LifecycleAction.SUBMIT)
            case = self._decrypt_case(s, row)
            files = [
                self._file(s, b)
                for b in s.scalars(select(BlobRow).where(BlobRow.case_id == case_id))
            ]
            found = problems(case, self._consents(s, row), files)
            if found:
                raise ValidationError.of(found)
            row.status = CaseStatus.SUBMITTED.value
            row.updated_at = row.submitted_at = datetime.now(UTC)
            self._allowed(s, ctx, "case.submit", case_id)
            s.flush()
            return self._decrypt_case(s, row)

    def export_view(
        self, case_id: str, *, fmt: str, authorize: Authorize, ctx: AuditContext
    ) -> tuple[Case, list[Consent], list[CaseFile]]:
        """Everything an export of the case needs, read in one audited transaction."""
        with session_scope(self.sessions) as s:
            row = self._row(s, case_id)
            self._check(s, row, authorize, ctx, "case.export")
            case = self._decrypt_case(s, row)
            consents = self._consents(s, row)
            files = [
                self._file(s, b)
                for b in s.scalars(
                    select(BlobRow).where(BlobRow.case_id == case_id).order_by(BlobRow.created_at)
                )
            ]
            self._allowed(s, ctx, "case.export", case_id, detail=f"format={fmt}")
            return case, consents, files

    def consented_case_ids(self, scope: ConsentScope, *, network: str | None = None) -> list[str]:
        """Cases whose latest consent record grants ``scope`` now (withdrawals applied).

        Registry and network-database exports take their cases from here, so a
        withdrawn scope drops the case from the very next export. Decided in SQL
        on the clear scope columns: no row is decrypted or loaded whole.
        """
        with session_scope(self.sessions, write=False) as s:
            stmt = select(CaseRow.id).where(CaseRow.id.in_(consent_granted(scope)))
            if network is not None:
                stmt = stmt.where(CaseRow.network == network)
            return list(s.scalars(stmt.order_by(CaseRow.created_at, CaseRow.id)))

    def case_ref(self, case_id: str) -> CaseRef:
        with session_scope(self.sessions) as s:
            return _ref(self._row(s, case_id))

    # -- files -------------------------------------------------------------

    def add_file(
        self,
        case_id: str,
        chunks: Iterator[bytes],
        *,
        name: str,
        media_type: str,
        max_size: int,
        authorize: Authorize,
        ctx: AuditContext,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
    ) -> CaseFile:
        """Stream ``chunks`` into an encrypted blob; nothing is kept if anything fails."""
        if not name or len(name) > 255 or "/" in name or "\x00" in name:
            raise ValidationError("name", "must be a file name of 1-255 characters")
        with session_scope(self.sessions) as s:
            row = self._row(s, case_id)
            self._check(s, row, authorize, ctx, "file.write")
            data_key = self.keys.get(s, case_key_id(case_id))
        blob_id = str(uuid.uuid4())
        digest = hashlib.sha256()
        size = 0
        with self.blobs.writer(blob_id) as fh:
            writer = SegmentedWriter(data_key, fh, blob_id=blob_id, segment_size=segment_size)
            for chunk in chunks:
                size += len(chunk)
                if size > max_size:
                    raise ValidationError("file", f"is larger than {max_size} bytes")
                digest.update(chunk)
                writer.write(chunk)
            writer.close()
        if size == 0:
            self.blobs.delete(blob_id)
            raise ValidationError("file", "is empty")
        now = datetime.now(UTC)
        try:
            with session_scope(self.sessions) as s:
                cipher = self._cipher(s, case_id)
                ad = {"table": "blobs", "row_id": blob_id}
                s.add(
                    BlobRow(
                        id=blob_id,
                        case_id=case_id,
                        name_enc=cipher.encrypt(name, field="name", **ad),
                        media_type=media_type[:100],
                        size=size,
                        stored_size=self.blobs.size(blob_id),
                        segment_size=segment_size,
                        sha256_enc=cipher.encrypt(digest.hexdigest(), field="sha256", **ad),
                        created_by=ctx.actor,
                        created_at=now,
                    )
                )
                self._allowed(s, ctx, "file.write", case_id, detail=f"file={blob_id} bytes={size}")
        except BaseException:
            self.blobs.delete(blob_id)
            raise
        return CaseFile(
            blob_id, case_id, name, media_type, size, digest.hexdigest(), ctx.actor, now
        )

    def _file(self, s: Session, row: BlobRow) -> CaseFile:
        cipher = self._cipher(s, row.case_id)
        ad = {"table": "blobs", "row_id": row.id}
        return CaseFile(
            id=row.id,
            case_id=row.case_id,
            name=cipher.decrypt_text(row.name_enc, field="name", **ad),
            media_type=row.media_type,
            size=row.size,
            sha256=cipher.decrypt_text(row.sha256_enc, field="sha256", **ad),
            created_by=row.created_by,
            created_at=_utc(row.created_at),
        )

    def list_files(
        self, case_id: str, *, authorize: Authorize, ctx: AuditContext
    ) -> list[CaseFile]:
        with session_scope(self.sessions) as s:
            row = self._row(s, case_id)
            self._check(s, row, authorize, ctx, "file.list")
            rows = s.scalars(
                select(BlobRow).where(BlobRow.case_id == case_id).order_by(BlobRow.created_at)
            ).all()
            files = [self._file(s, r) for r in rows]
            self._allowed(s, ctx, "file.list", case_id)
            return files

    def open_file(
        self, case_id: str, file_id: str, *, authorize: Authorize, ctx: AuditContext
    ) -> tuple[CaseFile, SegmentedReader]:
        """Metadata and a random-access reader over the decrypted bytes (caller closes)."""
        with session_scope(self.sessions) as s:
            row = self._row(s, case_id)
            self._check(s, row, authorize, ctx, "file.read")
            blob = s.get(BlobRow, file_id) if _is_uuid(file_id) else None
            if blob is None or blob.case_id != case_id:
                raise NotFoundError("no such file in this case")
            meta = self._file(s, blob)
            key = self.keys.get(s, case_key_id(case_id))
            self._allowed(s, ctx, "file.read", case_id, detail=f"file={file_id}")
        fh = self.blobs.open(file_id)
        try:
            return meta, SegmentedReader(key, fh, blob_id=file_id)
        except BaseException:
            fh.close()
            raise

    # -- erasure and keys --------------------------------------------------

    def erase_case(self, case_id: str, *, ctx: AuditContext) -> int:
        """GDPR Art. 17 by crypto-shredding: key first, then rows and blobs.

        Returns the number of blobs removed. The audit entries of the case stay;
        they hold no patient data.
        """
        with session_scope(self.sessions) as s:
            row = self._row(s, case_id)
            blob_ids = list(s.scalars(select(BlobRow.id).where(BlobRow.case_id == case_id)))
            self.keys.destroy(s, case_key_id(case_id))
            s.execute(delete(BlobRow).where(BlobRow.case_id == case_id))
            s.delete(row)
            self._allowed(s, ctx, "case.erase", case_id, detail=f"blobs={len(blob_ids)}")
        # the key is gone, so what remains on disk is already unreadable
        for blob_id in blob_ids:
            self.blobs.delete(blob_id)
        return len(blob_ids)


#: statuses at which the panel's outcome exists (signed, possibly closed since)
OUTCOME_STATUSES = frozenset({CaseStatus.OUTCOME_SIGNED, CaseStatus.CLOSED})


def _mark_milestone(row: CaseRow, status: CaseStatus, now: datetime) -> None:
    """Remember the first submission and the first signed outcome of a case."""
    if status is not CaseStatus.DRAFT and row.submitted_at is None:
        row.submitted_at = now
    if status in OUTCOME_STATUSES and row.outcome_at is None:
        row.outcome_at = now


def _is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value
    except (ValueError, TypeError, AttributeError):
        return False
