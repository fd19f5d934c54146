"""Resumable uploads from a user server to the case store (the client half).

:func:`upload_file` sends a local file through the store's chunked upload protocol (see
:mod:`cpms_hub.service.upload_routes`): it declares the upload, sends ``chunk_size``
pieces at the offset the store reports, and completes it. Large files (whole-slide
images are often several GB) survive what notebooks see all the time:

* a dropped connection or a store restart mid-chunk: the client asks the store how many
  bytes it holds (``received``) and goes on from there, up to ``chunk_retries`` times in
  a row (any accepted chunk resets the count);
* an interrupted call (a kernel interrupt, an exception from ``progress``, a crash): the
  upload id is remembered in a small state file, and the next call for the same file
  resumes it instead of starting again.

The state file lives in ``$XDG_CACHE_HOME/cpms/uploads`` (``~/.cache/cpms/uploads``), a
0700 folder, mode 0600. Its name is a SHA-256 of (store URL, case id, absolute path, size,
modification time), so it reveals no file name, and a file that changes gets a new
upload; its content is the random upload id only. It is removed once the upload is
complete.

The whole file is hashed (SHA-256) as it is sent and checked against the digest the store
computes from what it stored, so a file modified during the upload, or any corruption on
the way, raises :class:`~cpms_hub.domain.IntegrityError` rather than passing silently.
Memory stays at one 1 MiB read buffer: chunks are streamed from the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from cpms_hub.domain import ConflictError, IntegrityError, ValidationError

__all__ = ["upload_file", "default_state_dir"]

#: bytes read from the file and sent per write
_PIECE = 1024 * 1024
#: how often to wait for another request that holds the upload (Retry-After each time)
_BUSY_TRIES = 60
#: pauses between retries after a failure, in seconds (the last one repeats)
_BACKOFF = (0.5, 1.0, 2.0, 5.0)

Progress = Callable[[int, int], None]
RaiseFor = Callable[[httpx.Response], None]


def default_state_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cpms" / "uploads"


class _State:
    """The remembered upload id of one (store, case, file version)."""

    def __init__(self, folder: Path, key: str) -> None:
        self.folder = folder
        self.path = folder / f"{key}.json"

    def load(self) -> str | None:
        try:
            upload_id = json.loads(self.path.read_text()).get("upload_id")
        except (OSError, ValueError, AttributeError):
            return None
        return upload_id if isinstance(upload_id, str) else None

    def save(self, upload_id: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({"upload_id": upload_id}, fh)
        os.replace(tmp, self.path)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def _state_key(http: httpx.Client, case_id: str, path: Path, st: os.stat_result) -> str:
    parts = (str(http.base_url), case_id, str(path), str(st.st_size), str(st.st_mtime_ns))
    return hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()


def _reasons(resp: httpx.Response) -> list[str]:
    try:
        reasons = resp.json().get("reasons") or []
    except (ValueError, AttributeError):
        return []
    return [r for r in reasons if isinstance(r, str)]


def _retryable(resp: httpx.Response) -> bool:
    # the store or the proxy in front of it restarting, overloaded or timing out
    return resp.status_code in (502, 503, 504) or resp.status_code == 500


def upload_file(
    http: httpx.Client,
    case_id: str,
    path: str | os.PathLike[str],
    *,
    media_type: str = "application/octet-stream",
    progress: Progress | None = None,
    chunk_retries: int = 3,
    resume: bool = True,
    state_dir: str | os.PathLike[str] | None = None,
    raise_for: RaiseFor | None = None,
) -> dict[str, Any]:
    """Upload ``path`` into case ``case_id``; the stored file's JSON (as ``POST /files``).

    ``http`` is a client whose base URL is the store's API root and which authenticates
    (``CaseStoreClient`` passes its own). ``progress(sent, total)`` is called as bytes go
    out; an exception from it stops the upload, which a later call resumes. ``resume``
    remembers and reuses the upload id (see the module docs); with ``resume=False`` a
    failed upload is aborted instead. ``raise_for`` turns an error response into an
    exception (``CaseStoreClient._raise_for`` gives CPMS errors; the default raises
    :class:`httpx.HTTPStatusError`).
    """
    path = Path(path).resolve()
    raise_for = raise_for or (lambda resp: resp.raise_for_status())
    st = path.stat()
    size = st.st_size
    if size == 0:
        # the store refuses empty files; say so as POST /files does, before any request
        raise ValidationError("file", "is empty")
    base = f"/cases/{quote(case_id, safe='')}/uploads"
    state = _State(
        Path(state_dir) if state_dir is not None else default_state_dir(),
        _state_key(http, case_id, path, st),
    )
    session = _Upload(http, base, path, size, progress, chunk_retries, raise_for)

    upload_id = state.load() if resume else None
    if upload_id is not None:
        found = session.status(upload_id)
        if found is None or found["status"] == "aborted" or found["size"] != size:
            state.clear()
            upload_id = None
        elif found["status"] == "complete":
            # finished before, but the answer to "complete" was lost: ask again
            result = session.complete(upload_id, verify=False)
            state.clear()
            return result
        else:
            session.offset = found["received"]
            session.chunk_size = found["chunk_size"]
    if upload_id is None:
        created = session.create(path.name, media_type)
        upload_id = created["id"]
        if resume:
            state.save(upload_id)
    try:
        session.send_all(upload_id)
        result = session.complete(upload_id, verify=True)
    except BaseException:
        if not resume:
            session.abort_quietly(upload_id)
        raise
    state.clear()
    return result


class _Upload:
    """One upload's conversation with the store (the steps of :func:`upload_file`)."""

    def __init__(
        self,
        http: httpx.Client,
        base: str,
        path: Path,
        size: int,
        progress: Progress | None,
        chunk_retries: int,
        raise_for: RaiseFor,
    ) -> None:
        self.http = http
        self.base = base
        self.path = path
        self.size = size
        self.progress = progress
        self.chunk_retries = chunk_retries
        self.raise_for = raise_for
        self.offset = 0
        self.chunk_size = 0
        # the digest covers bytes [0, hashed): retries never hash a byte twice
        self.digest = hashlib.sha256()
        self.hashed = 0

    # -- requests --------------------------------------------------------------------

    def _call(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One request, retried on connection failures and 5xx like a chunk."""
        failures = 0
        while True:
            try:
                resp = self.http.request(method, url, **kwargs)
            except httpx.TransportError as exc:
                failures = self._failed(failures, error=exc)
                continue
            if _retryable(resp):
                failures = self._failed(failures, resp=resp)
                continue
            return resp

    def _failed(
        self,
        failures: int,
        *,
        error: BaseException | None = None,
        resp: httpx.Response | None = None,
    ) -> int:
        """Pause before the next attempt, or give up once ``chunk_retries`` are spent."""
        if failures >= self.chunk_retries:
            if resp is not None:
                self.raise_for(resp)
            if error is not None:
                raise error
            raise ConflictError("the store kept failing; giving up")
        time.sleep(_BACKOFF[min(failures, len(_BACKOFF) - 1)])
        return failures + 1

    def create(self, name: str, media_type: str) -> dict[str, Any]:
        body = {"name": name, "size": self.size, "media_type": media_type}
        resp = self._call("POST", self.base, json=body)
        self.raise_for(resp)
        created = resp.json()
        self.chunk_size = created["chunk_size"]
        self.offset = created["received"]
        return created

    def status(self, upload_id: str) -> dict[str, Any] | None:
        resp = self._call("GET", f"{self.base}/{quote(upload_id, safe='')}")
        if resp.status_code == 404:
            return None
        self.raise_for(resp)
        return resp.json()

    def complete(self, upload_id: str, *, verify: bool) -> dict[str, Any]:
        # the store reads the whole blob back to hash it: allow ~100 MB/s plus a minute
        timeout = httpx.Timeout(self.http.timeout.connect or 30.0, read=60 + self.size / 1e8)
        url = f"{self.base}/{quote(upload_id, safe='')}/complete"
        for _ in range(_BUSY_TRIES):
            resp = self._call("POST", url, timeout=timeout)
            if resp.status_code == 409 and "Retry-After" in resp.headers:
                time.sleep(float(resp.headers["Retry-After"]))
                continue
            break
        self.raise_for(resp)
        result = resp.json()
        if verify and result.get("sha256") != self.digest.hexdigest():
            raise IntegrityError(
                f"the stored file {result.get('id')} differs from the local file "
                "(was it modified during the upload?)"
            )
        return result

    def abort_quietly(self, upload_id: str) -> None:
        try:
            self.http.delete(f"{self.base}/{quote(upload_id, safe='')}")
        except httpx.HTTPError:
            pass  # best effort: the store expires idle uploads anyway

    # -- chunks ----------------------------------------------------------------------

    def _catch_up_digest(self) -> None:
        """Hash what the store already holds (a resumed upload starts past 0)."""
        if self.hashed >= self.offset:
            return
        with self.path.open("rb") as fh:
            fh.seek(self.hashed)
            while self.hashed < self.offset:
                piece = fh.read(min(_PIECE, self.offset - self.hashed))
                if not piece:
                    raise IntegrityError("the local file became shorter during the upload")
                self.digest.update(piece)
                self.hashed += len(piece)

    def _body(self, offset: int, length: int) -> Iterator[bytes]:
        with self.path.open("rb") as fh:
            fh.seek(offset)
            sent = 0
            while sent < length:
                piece = fh.read(min(_PIECE, length - sent))
                if not piece:
                    raise IntegrityError("the local file became shorter during the upload")
                start = offset + sent
                if start + len(piece) > self.hashed and start <= self.hashed:
                    self.digest.update(piece[self.hashed - start :])
                    self.hashed = start + len(piece)
                sent += len(piece)
                yield piece
                if self.progress is not None:
                    self.progress(offset + sent, self.size)

    def send_all(self, upload_id: str) -> None:
        url = f"{self.base}/{quote(upload_id, safe='')}/chunk"
        failures = busy = 0
        self._catch_up_digest()
        if self.progress is not None:
            self.progress(self.offset, self.size)
        while self.offset < self.size:
            length = min(self.chunk_size, self.size - self.offset)
            headers = {
                "Upload-Offset": str(self.offset),
                "Content-Length": str(length),
                "Content-Type": "application/offset+octet-stream",
            }
            try:
                resp = self.http.put(url, content=self._body(self.offset, length), headers=headers)
            except httpx.TransportError as exc:
                failures = self._failed(failures, error=exc)
                self._resync(upload_id)
                continue
            if resp.status_code == 200:
                self.offset = resp.json()["received"]
                failures = busy = 0
                continue
            if resp.status_code == 409 and "Retry-After" in resp.headers and busy < _BUSY_TRIES:
                busy += 1
                time.sleep(float(resp.headers["Retry-After"]))
                continue
            reasons = _reasons(resp)
            if resp.status_code == 409 and any(r.startswith("offset:") for r in reasons):
                # our earlier attempt did arrive after all (or another client went ahead)
                failures = self._failed(failures, resp=resp)
                self._resync(upload_id)
                continue
            if _retryable(resp):
                failures = self._failed(failures, resp=resp)
                self._resync(upload_id)
                continue
            self.raise_for(resp)
            raise ConflictError(f"unexpected answer {resp.status_code} to a chunk")

    def _resync(self, upload_id: str) -> None:
        found = self.status(upload_id)
        if found is None or found["status"] != "open":
            raise ConflictError("the upload was aborted or expired on the store; start again")
        self.offset = found["received"]
        self.chunk_size = found["chunk_size"]
        self._catch_up_digest()
        if self.progress is not None:
            self.progress(self.offset, self.size)  # may go back: that chunk is sent again
