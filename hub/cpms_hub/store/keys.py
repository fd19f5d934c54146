"""Data keys: one per case, a few for the system, all wrapped by the keyring.

Unwrapped keys are cached in memory by the *wrapped* bytes: every use still
reads the key's row, so a key destroyed by another process (``cpms-admin
erase-case``) stops working at once, while the AES unwrap is done only once.
Rotation re-wraps every row under the keyring's new primary key without
touching any data encrypted under the data keys. Rotation is usually run by
``cpms-admin`` while the store service keeps running, so every process
reloads the key file when it changes (a ``stat`` per new key, and a reload
when a wrapped key names a key-encryption key it does not hold).
"""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from cpms_hub.crypto import FieldCipher, Keyring, new_data_key
from cpms_hub.domain.errors import KeyUnavailableError

from .database import TRANSACTION_MEMO
from .schema import DataKeyRow

__all__ = ["DataKeys", "case_key_id", "SYSTEM_ACCOUNTS_KEY"]

SYSTEM_ACCOUNTS_KEY = "system:accounts"


def case_key_id(case_id: str) -> str:
    return f"case:{case_id}"


class DataKeys:
    """Creates, unwraps, re-wraps and destroys wrapped data keys."""

    def __init__(self, keyring: Keyring, key_file: str | os.PathLike[str] | None = None) -> None:
        self.keyring = keyring
        self.key_file = key_file
        self._key_file_stamp = self._stamp()
        self._cache: dict[bytes, bytes] = {}
        self._lock = threading.Lock()

    def _stamp(self) -> tuple[int, int] | None:
        if self.key_file is None:
            return None
        try:
            st = os.stat(self.key_file)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_ino)

    def reload_if_changed(self) -> bool:
        """Pick up a key file rotated by another process; True if it changed."""
        stamp = self._stamp()
        if stamp is None or stamp == self._key_file_stamp:
            return False
        self.keyring = Keyring.load(self.key_file)
        self._key_file_stamp = stamp
        return True

    def create(self, session: Session, key_id: str) -> bytes:
        """A fresh data key, stored wrapped under ``key_id`` in this transaction."""
        self.reload_if_changed()
        key = new_data_key()
        wrapped = self.keyring.wrap(key, context=key_id)
        session.add(
            DataKeyRow(
                id=key_id,
                wrapped=wrapped,
                kek_id=self.keyring.primary_id,
                created_at=datetime.now(UTC),
            )
        )
        with self._lock:
            self._cache[wrapped] = key
        return key

    def get(self, session: Session, key_id: str) -> bytes:
        wrapped = session.scalar(select(DataKeyRow.wrapped).where(DataKeyRow.id == key_id))
        if wrapped is None:
            raise KeyUnavailableError(f"data key {key_id.split(':')[0]} is not available")
        return self.from_wrapped(key_id, wrapped)

    def from_wrapped(self, key_id: str, wrapped: bytes) -> bytes:
        """The data key of a row the caller has just read (one query for many keys)."""
        with self._lock:
            key = self._cache.get(wrapped)
        if key is None:
            try:
                key = self.keyring.unwrap(wrapped, context=key_id)
            except KeyUnavailableError:
                if not self.reload_if_changed():
                    raise
                key = self.keyring.unwrap(wrapped, context=key_id)
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[wrapped] = key
        return key

    def get_or_create(self, session: Session, key_id: str) -> bytes:
        try:
            return self.get(session, key_id)
        except KeyUnavailableError:
            return self.create(session, key_id)

    def cipher(self, session: Session, key_id: str) -> FieldCipher:
        return FieldCipher(self.get(session, key_id))

    def destroy(self, session: Session, key_id: str) -> bool:
        """Crypto-shred: delete the wrapped key; True if there was one."""
        wrapped = session.scalar(select(DataKeyRow.wrapped).where(DataKeyRow.id == key_id))
        session.execute(delete(DataKeyRow).where(DataKeyRow.id == key_id))
        # nor may this transaction use the key it remembered for its listings
        session.info.get(TRANSACTION_MEMO, {}).pop(key_id, None)
        if wrapped is not None:
            with self._lock:
                self._cache.pop(wrapped, None)
        return wrapped is not None

    def rewrap_all(self, session: Session) -> int:
        """Re-wrap every key not under the primary KEK; returns how many moved."""
        moved = 0
        for row in session.scalars(select(DataKeyRow)):
            if self.keyring.needs_rewrap(row.wrapped):
                row.wrapped = self.keyring.rewrap(row.wrapped, context=row.id)
                row.kek_id = self.keyring.primary_id
                moved += 1
        return moved
