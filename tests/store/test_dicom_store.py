"""The DICOM store on SQLite and PostgreSQL: per-instance all or nothing, erasure, refusals."""

from __future__ import annotations

import io
import uuid
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import func, select

from cpms_hub.domain import PermissionDeniedError
from cpms_hub.service.dicom_routes import dicom_store
from cpms_hub.state import State
from cpms_hub.store.database import session_scope
from cpms_hub.store.dicom import DicomInstanceRow, DicomStore
from cpms_hub.store.schema import AuditRow, BlobRow
from tests.data_gen import ct_series
from tests.store.test_cases import CTX, allow, deny, new_case


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name, body in members.items():
            z.writestr(name, body)
    return out.getvalue()


def _blob_files(state: State) -> int:
    return sum(1 for p in state.cases.blobs.root.rglob("*") if p.is_file())


def _upload(state: State, case_id: str, data: bytes):  # noqa: ANN202
    return state.cases.add_file(
        case_id,
        iter([data]),
        name="study.zip",
        media_type="application/zip",
        max_size=1 << 30,
        authorize=allow,
        ctx=CTX,
    )


@pytest.fixture
def series(tmp_path) -> list[bytes]:
    return [p.read_bytes() for p in ct_series(tmp_path / "ct", slices=3, size=16)]


def test_import_stores_good_instances_and_reports_bad_ones(backend: State, series) -> None:
    case = new_case(backend)
    upload = _upload(backend, case.id, _zip({"1": series[0], "2": b"junk", "3": series[1]}))
    store = dicom_store(backend)
    report = store.import_file(case.id, upload.id, authorize=allow, ctx=CTX)
    assert (report["stored"], report["held"], report["errors"]) == (2, 0, 1)
    assert report["original_deleted"] is True
    with session_scope(backend.sessions, write=False) as s:
        assert s.scalar(select(func.count()).select_from(DicomInstanceRow)) == 2
        assert s.get(BlobRow, upload.id) is None
        actions = [r.action for r in s.scalars(select(AuditRow))]
    assert "dicom.import" in actions
    assert _blob_files(backend) == 2  # native CT: frames are served from the file itself
    studies = store.list_studies(case.id, authorize=allow, ctx=CTX)
    assert studies[0]["series"][0]["instances"] == 2


def test_a_failure_keeps_nothing_of_the_import(backend: State, series) -> None:
    case = new_case(backend)
    upload = _upload(backend, case.id, _zip({"1": series[0], "2": series[1], "3": series[2]}))
    real = dicom_store(backend)
    calls = []

    def failing(data, secret, confirmed, mask):  # noqa: ANN001, ANN202
        calls.append(1)
        if len(calls) == 3:
            raise MemoryError  # not a per-file error: the whole import stops
        return real.prepare(data, secret, confirmed, mask)

    store = DicomStore(backend.cases, prepare=failing, items=real.items)
    before = _blob_files(backend)
    with pytest.raises(MemoryError):
        store.import_file(case.id, upload.id, authorize=allow, ctx=CTX)
    assert _blob_files(backend) == before  # the two instances written are gone again
    with session_scope(backend.sessions, write=False) as s:
        assert s.scalar(select(func.count()).select_from(DicomInstanceRow)) == 0
        assert s.get(BlobRow, upload.id) is not None  # the original stays


def test_refused_and_erased(backend: State, series) -> None:
    case = new_case(backend)
    upload = _upload(backend, case.id, series[0])
    store = dicom_store(backend)
    with pytest.raises(PermissionDeniedError):
        store.import_file(case.id, upload.id, authorize=deny, ctx=CTX)
    with pytest.raises(PermissionDeniedError):
        store.list_studies(case.id, authorize=deny, ctx=CTX)
    with pytest.raises(PermissionDeniedError):
        store.store_payloads(case.id, [series[1]], authorize=deny, ctx=CTX)
    store.import_file(case.id, upload.id, authorize=allow, ctx=CTX)
    report = store.store_payloads(case.id, [series[1], series[1]], authorize=allow, ctx=CTX)
    assert report["stored"] == 2 and "already stored" in report["instances"][1]["message"]
    backend.cases.erase_case(case.id, ctx=CTX)
    with session_scope(backend.sessions, write=False) as s:
        assert s.scalar(select(func.count()).select_from(DicomInstanceRow)) == 0
    assert _blob_files(backend) == 0


def test_no_identifier_reaches_the_disk(backend: State, series, request) -> None:
    """Markers in identifying attributes are found nowhere on disk after an import."""
    import pydicom
    from sqlalchemy.engine import make_url

    from tests.store.test_plaintext_scan import hits, read_tree

    tag = uuid.uuid4().hex
    ds = pydicom.dcmread(io.BytesIO(series[0]))
    markers = [f"ZEBRA-{k}-{tag}" for k in ("NAME", "ID", "INST", "DESC", "PRIV")]
    ds.PatientName, ds.PatientID, ds.InstitutionName, ds.StudyDescription = markers[:4]
    block = ds.private_block(0x0011, "CPMS TEST", create=True)
    block.add_new(0x01, "LO", markers[4])
    original_uid = str(ds.SOPInstanceUID)
    out = io.BytesIO()
    ds.save_as(out)
    case = new_case(backend)
    upload = _upload(backend, case.id, out.getvalue())
    report = dicom_store(backend).import_file(case.id, upload.id, authorize=allow, ctx=CTX)
    assert report["stored"] == 1
    needles = [*markers, original_uid]
    assert hits(read_tree(Path(backend.settings.state_dir)), needles) == []
    if backend.engine.dialect.name != "sqlite":
        cluster = request.getfixturevalue("postgres_cluster")
        dump = cluster.dump(make_url(backend.settings.db_url).database)
        assert hits({"pg_dump": dump}, needles) == []


def test_an_unexpected_reader_error_fails_only_its_file(backend: State, series) -> None:
    case = new_case(backend)
    upload = _upload(backend, case.id, _zip({"1": series[0], "2": series[1], "3": series[2]}))
    real = dicom_store(backend)

    def flaky(data, secret, confirmed, mask):  # noqa: ANN001, ANN202
        if data == series[1]:
            raise RecursionError("deeply nested")  # a reader bug, not a CpmsError
        return real.prepare(data, secret, confirmed, mask)

    store = DicomStore(backend.cases, prepare=flaky, items=real.items)
    report = store.import_file(case.id, upload.id, authorize=allow, ctx=CTX)
    assert (report["stored"], report["errors"]) == (2, 1)
    assert "unexpected error" in report["instances"][1]["message"]
    assert "nested" not in str(report)  # the exception's text is not passed on


def test_open_blob_reads_a_header_without_the_pixels(backend: State, series) -> None:
    import pydicom

    case = new_case(backend)
    upload = _upload(backend, case.id, _zip({"1": series[0]}))
    store = dicom_store(backend)
    store.import_file(case.id, upload.id, authorize=allow, ctx=CTX)
    key, (inst,) = store.instances(case.id, authorize=allow, ctx=CTX)
    with store.open_blob(key, inst.blob_id) as fh:
        ds = pydicom.dcmread(fh, stop_before_pixels=True)
        assert fh.tell() < inst.pixel_offset + inst.frame_bytes  # the pixels were not read
    assert ds.SOPInstanceUID == inst.sop_uid and "PixelData" not in ds
    assert ds.PatientIdentityRemoved == "YES"
