"""Blob backends: where encrypted file segments live.

The store encrypts before a byte reaches a backend (see
:mod:`cpms_hub.crypto.segmented`); backends only keep opaque files by id.
The local-folder backend (the default) fans files out over two levels of
sub-folders and creates everything private (0700 folders, 0600 files). A
write lands under a temporary name and is renamed into place only when
complete, so a failed upload leaves nothing behind.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = ["LocalBlobBackend"]


class LocalBlobBackend:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _path(self, blob_id: str) -> Path:
        uuid.UUID(blob_id)  # ids are UUIDs; anything else could walk the tree
        return self.root / blob_id[:2] / blob_id[2:4] / blob_id

    @contextmanager
    def writer(self, blob_id: str) -> Iterator[BinaryIO]:
        """Write a blob atomically: visible only if the block completes."""
        final = self._path(blob_id)
        final.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = final.with_name(final.name + ".partial")
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                yield fh
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def open(self, blob_id: str) -> BinaryIO:
        return open(self._path(blob_id), "rb")  # noqa: SIM115 - the caller closes it

    def size(self, blob_id: str) -> int:
        return self._path(blob_id).stat().st_size

    def delete(self, blob_id: str) -> None:
        self._path(blob_id).unlink(missing_ok=True)

    def exists(self, blob_id: str) -> bool:
        return self._path(blob_id).exists()
