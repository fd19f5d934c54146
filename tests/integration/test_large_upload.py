"""A 2 GiB file through the real deployment: interrupted, resumed, verified, never in clear.

The file is generated in ``tmp_path`` from one random MiB repeated (every segment is still
encrypted under its own nonce, so the store processes 2 GiB of real bytes), with a marker
string planted at a few offsets. It goes in through ``CaseStoreClient.upload`` and the
proxy, exactly as a notebook sends it. The first call is cut off in the middle of its
third chunk (the progress callback raises, so the client drops the connection with the
body half sent, as a kernel interrupt would); the second call finds the remembered
upload and resumes at the last chunk the store accepted. The download is hashed as it
streams, and the partial and final blob files are searched for the marker. A second,
smaller test cuts the connection at the transport level (as a network failure does) and
checks that a single call recovers on its own.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cpms_hub.domain import ValidationError
from cpms_widgets import CaseStoreClient
from cpms_widgets.uploads import upload_file

pytestmark = pytest.mark.deployment

MiB = 1024 * 1024
SIZE = 2 * 1024 * MiB
CHUNK = 8 * MiB  # the store's chunk size (checked against what it reports)
MARKER = f"BIGUPLOAD-{uuid.uuid4().hex[:12]}".encode()


def make_file(path: Path, size: int, marker_at: list[int]) -> str:
    """``size`` bytes of one random MiB repeated, markers planted; its SHA-256."""
    block = os.urandom(MiB)
    digest = hashlib.sha256()
    with path.open("wb") as fh:
        for start in range(0, size, MiB):
            piece = block[: min(MiB, size - start)]
            hits = [m for m in marker_at if start <= m < start + len(piece)]
            if hits:
                buf = bytearray(piece)
                for m in hits:
                    buf[m - start : m - start + len(MARKER)] = MARKER
                piece = bytes(buf)
            digest.update(piece)
            fh.write(piece)
    return digest.hexdigest()


def files_holding(root: Path, needle: bytes) -> list[str]:
    """Files under ``root`` containing ``needle``, read in 8 MiB windows that overlap."""
    found = []
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        with path.open("rb") as fh:
            tail = b""
            while block := fh.read(8 * MiB):
                if needle in tail + block:
                    found.append(str(path))
                    break
                tail = block[-len(needle) :]
    return found


def download_sha256(api: str, token: str, case_id: str, file_id: str) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    url = f"{api}/cases/{case_id}/files/{file_id}"
    headers = {"Authorization": f"token {token}"}
    with httpx.stream("GET", url, headers=headers, timeout=120, trust_env=False) as resp:
        assert resp.status_code == 200, resp.read()
        for piece in resp.iter_bytes(4 * MiB):
            digest.update(piece)
            size += len(piece)
    return digest.hexdigest(), size


class Interrupted(Exception):
    """What the user's progress callback raises (a stop button, a kernel interrupt)."""


def test_two_gib_upload_interrupted_resumed_and_verified(
    deployment, tokens, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the client remembers unfinished uploads under $XDG_CACHE_HOME: keep ours here
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    token = tokens["clin-a"]
    client = CaseStoreClient(deployment.api, token, timeout=60)
    case = client.create_case("Whole-slide images")
    big = tmp_path / "slide.svs"
    markers = [5, 2 * CHUNK + 3 * MiB + 17, SIZE // 2 + 1, SIZE - len(MARKER) - 1]
    expected = make_file(big, SIZE, markers)
    blobs = deployment.state_dir / "blobs"
    try:
        # 1. cut off half-way through the third chunk
        def stop_in_third_chunk(sent: int, total: int) -> None:
            assert total == SIZE
            if sent >= 2 * CHUNK + 4 * MiB:
                raise Interrupted

        with pytest.raises(Interrupted):
            client.upload(case.id, big, media_type="image/tiff", progress=stop_in_third_chunk)
        partials = list((blobs / "uploads").glob("*.part"))
        assert len(partials) == 1
        upload_id = partials[0].name.removesuffix(".part")
        status = httpx.get(
            f"{deployment.api}/cases/{case.id}/uploads/{upload_id}",
            headers={"Authorization": f"token {token}"},
            trust_env=False,
        ).json()
        assert status["chunk_size"] == CHUNK
        assert (status["received"], status["size"], status["status"]) == (2 * CHUNK, SIZE, "open")
        # nothing of the file in clear, mid-upload (a marker sits in the held-back tail)
        assert files_holding(blobs, MARKER) == []

        # 2. the same call again resumes where the store stopped
        seen: list[int] = []
        started = time.monotonic()
        stored = client.upload(
            case.id, big, media_type="image/tiff", progress=lambda s, t: seen.append(s)
        )
        upload_seconds = time.monotonic() - started
        assert seen[0] == 2 * CHUNK  # resumed, not restarted
        assert seen[-1] == SIZE
        assert stored.id == upload_id and stored.size == SIZE
        assert stored.sha256 == expected and stored.name == "slide.svs"
        moved = (SIZE - 2 * CHUNK) / MiB
        print(
            f"\nupload of {moved:.0f} MiB took {upload_seconds:.1f} s: "
            f"{moved / upload_seconds:.0f} MiB/s (create/chunks/complete through the proxy)"
        )
        assert list((blobs / "uploads").glob("*")) == []  # the partial became the blob
        assert not list((tmp_path / "cache").rglob("*.json"))  # state file cleared

        # 3. what comes back is what went in; the blob folder never holds it in clear
        started = time.monotonic()
        got, got_size = download_sha256(deployment.api, token, case.id, stored.id)
        print(f"download: {SIZE / MiB / (time.monotonic() - started):.0f} MiB/s")
        assert (got, got_size) == (expected, SIZE)
        assert files_holding(blobs, MARKER) == []
        assert MARKER not in deployment.log_text().encode()
        # two audit entries for 258 requests: no entry per chunk
        with CaseStoreClient(deployment.api, tokens["audit-u"]) as auditor:
            actions = [e["action"] for e in auditor.audit(case.id)]
        assert sorted(a for a in actions if a.startswith("upload.")) == [
            "upload.complete",
            "upload.create",
        ]
    finally:
        big.unlink(missing_ok=True)
        client.close()
    # the 2 GiB blob would sit in the session's deployment until the end: erase the case
    deployment.admin("erase-case", case.id, "--by", "test")
    assert not any(blobs.rglob(stored.id))


class _CutStream(httpx.SyncByteStream):
    """A request body that loses its connection after ``after`` bytes."""

    def __init__(self, inner: httpx.SyncByteStream, after: int) -> None:
        self.inner = inner
        self.after = after

    def __iter__(self) -> Iterator[bytes]:
        sent = 0
        for piece in self.inner:
            if sent + len(piece) > self.after:
                yield piece[: self.after - sent]
                raise httpx.WriteError("connection reset by peer (simulated)")
            sent += len(piece)
            yield piece


class _CutOnce(httpx.BaseTransport):
    """The real transport, but the Nth chunk upload loses its connection mid-body."""

    def __init__(self, inner: httpx.BaseTransport, nth: int, after: int) -> None:
        self.inner = inner
        self.nth = nth
        self.after = after
        self.puts = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            self.puts += 1
            if self.puts == self.nth:
                request.stream = _CutStream(request.stream, self.after)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def test_dropped_connection_is_recovered_within_one_call(deployment, tokens, tmp_path) -> None:
    token = tokens["clin-a"]
    with CaseStoreClient(deployment.api, token) as client:
        case = client.create_case("Dropped connection")
    path = tmp_path / "series.dcm"
    expected = make_file(path, 5 * CHUNK + 12345, [CHUNK + 1])
    transport = _CutOnce(httpx.HTTPTransport(), nth=3, after=3 * MiB + 5)
    with httpx.Client(
        base_url=deployment.api,
        headers={"Authorization": f"token {token}"},
        transport=transport,
        timeout=60,
    ) as http:
        seen: list[int] = []
        stored = upload_file(
            http,
            case.id,
            path,
            media_type="application/dicom",
            progress=lambda s, t: seen.append(s),
            state_dir=tmp_path / "state",
        )
    assert stored["sha256"] == expected and stored["size"] == path.stat().st_size
    assert transport.puts == 7  # six chunks, one of them twice
    # progress went back to the last accepted chunk once, then on to the end
    assert seen[-1] == path.stat().st_size
    assert any(b < a for a, b in zip(seen, seen[1:], strict=False))
    assert not list((tmp_path / "state").glob("*.json"))
    empty = tmp_path / "empty.dcm"
    empty.touch()
    with CaseStoreClient(deployment.api, token) as client, pytest.raises(ValidationError) as exc:
        client.upload(case.id, empty)
    assert exc.value.field == "file"


def _error(resp: httpx.Response, status: int) -> list[str]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"status", "error", "reasons"} and body["status"] == status
    return body["reasons"]


def test_upload_protocol_over_http(deployment, tokens) -> None:
    """The raw protocol: statuses, headers and the one error shape, as the README lists."""
    api = deployment.api
    owner = {"Authorization": f"token {tokens['clin-a']}"}
    stranger = {"Authorization": f"token {tokens['clin-b']}"}
    with httpx.Client(base_url=api, headers=owner, trust_env=False, timeout=60) as http:
        case = http.post("/cases", json={"title": "Protocol"}).json()
        base = f"/cases/{case['id']}/uploads"
        data = os.urandom(CHUNK + 1000)

        assert "size" in _error(http.post(base, json={"name": "x.bin", "size": 0}), 422)[0]
        assert (
            "colour"
            in _error(http.post(base, json={"name": "x.bin", "size": 5, "colour": "red"}), 422)[0]
        )
        created = http.post(base, json={"name": "scan.bin", "size": len(data)})
        assert created.status_code == 201, created.text
        up = created.json()
        assert up["received"] == 0 and up["chunk_size"] == CHUNK and up["status"] == "open"
        assert created.headers["Location"].endswith(f"{base}/{up['id']}")
        one = f"{base}/{up['id']}"

        # someone without write access to the case: 403 on every verb, nothing learned
        for method, path in (("GET", one), ("HEAD", one), ("PUT", one + "/chunk")):
            headers = {**stranger, "Upload-Offset": "0"}
            resp = http.request(method, path, headers=headers, content=b"x" * 10)
            assert resp.status_code == 403, (method, resp.status_code)

        put = {"Content-Type": "application/octet-stream"}
        reasons = _error(
            http.put(one + "/chunk", content=data[:CHUNK], headers={**put, "Upload-Offset": "5"}),
            409,
        )
        assert "offset: expected 0" in reasons
        assert "upload-offset" in _error(http.put(one + "/chunk", content=b"x"), 422)[0]
        short = http.put(one + "/chunk", content=data[:100], headers={**put, "Upload-Offset": "0"})
        assert _error(short, 422)[0].startswith("chunk:")
        ok = http.put(one + "/chunk", content=data[:CHUNK], headers={**put, "Upload-Offset": "0"})
        assert ok.status_code == 200, ok.text
        assert ok.json()["received"] == CHUNK and ok.headers["Upload-Offset"] == str(CHUNK)

        head = http.head(one)
        assert head.status_code == 200 and head.content == b""
        assert head.headers["Upload-Offset"] == str(CHUNK)
        assert head.headers["Upload-Length"] == str(len(data))
        assert head.headers["Upload-Status"] == "open"
        assert "size" in _error(http.post(one + "/complete"), 422)[0]
        # a final chunk declared too long is refused before its body is read; the store
        # still reads the body, so the same connection serves the next request
        too_long = http.put(
            one + "/chunk", content=data[:CHUNK], headers={**put, "Upload-Offset": str(CHUNK)}
        )
        assert _error(too_long, 422)[0] == f"chunk: must be exactly 1000 bytes at offset {CHUNK}"
        assert http.head(one).headers["Upload-Offset"] == str(CHUNK)

        last = http.put(
            one + "/chunk", content=data[CHUNK:], headers={**put, "Upload-Offset": str(CHUNK)}
        )
        assert last.json()["received"] == len(data)
        done = http.post(one + "/complete")
        assert done.status_code == 201, done.text
        f = done.json()
        assert f["id"] == up["id"] and f["name"] == "scan.bin" and f["size"] == len(data)
        assert f["sha256"] == hashlib.sha256(data).hexdigest()
        assert http.post(one + "/complete").json() == f  # a repeated complete: the same file
        assert http.get(f"/cases/{case['id']}/files/{f['id']}").content == data
        assert "complete" in _error(http.delete(one), 409)[0]

        # abort: 204, then the upload is gone
        second = http.post(base, json={"name": "b.bin", "size": 10}).json()
        assert http.delete(f"{base}/{second['id']}").status_code == 204
        _error(http.get(f"{base}/{second['id']}"), 404)
        assert [x["id"] for x in http.get(f"/cases/{case['id']}/files").json()] == [f["id"]]
