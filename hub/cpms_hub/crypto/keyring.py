"""Key-encryption keys (KEKs) kept in a key file outside the database.

CPMS uses envelope encryption: every case has its own random 256-bit data key, and the
database stores that data key only *wrapped* (encrypted) under a KEK from this keyring.
Destroying a case's wrapped data key crypto-erases the case; rotating the KEK only means
re-wrapping the small data keys, never re-encrypting the data itself.

The keyring is an ordered list of KEKs. The first one (the *primary*) wraps new data keys;
every KEK can unwrap. :meth:`Keyring.rotate` puts a fresh KEK in front and keeps the old
ones, so existing wrapped keys stay readable until they are re-wrapped with
:meth:`Keyring.rewrap`. The keyring also holds one long-lived ``index_key`` for blind
indexes; it is deliberately not rotated, because rotating it would invalidate every index.

Wrapping is AES-256-GCM (NIST SP 800-38D) with a 96-bit random nonce. Each KEK wraps only a
few keys per case, far below the SP 800-38D limit of 2**32 random-nonce invocations per key.
A wrapped key is self-describing::

    format (1 byte, 0x01) | key-id length (1 byte) | key id (ASCII) | nonce (12) | ct+tag (48)

The associated data is that header followed by the caller's ``context`` (for example
``"case:<uuid>"``), so a wrapped key cannot be replayed for another case or relabelled with
another key id.

The key file is JSON with base64 keys and a format version. It is created with mode 0600 and
refused at load time if group or others can access it. No key material ever appears in an
exception message or repr.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import secrets
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cpms_hub.domain.errors import ConfigurationError, IntegrityError, KeyUnavailableError

__all__ = ["KEY_SIZE", "Keyring", "new_data_key"]

#: Size in bytes of every key handled here (AES-256, HMAC-SHA256 index key).
KEY_SIZE = 32

_FILE_FORMAT = "cpms-keyring"
_FILE_VERSION = 1
_WRAP_FORMAT = 0x01
_NONCE_SIZE = 12
_TAG_SIZE = 16
# Key ids travel inside every wrapped key, so keep them short, printable and unambiguous.
_KEY_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
# A real key file is well under a kilobyte per key; refusing huge files avoids reading junk.
_MAX_FILE_SIZE = 1 << 20


def new_data_key() -> bytes:
    """Return a fresh random 256-bit data key (one per case)."""
    return secrets.token_bytes(KEY_SIZE)


def _new_key_id() -> str:
    # Date for operators, random suffix so two rotations on one day cannot collide.
    return f"kek-{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(4)}"


class Keyring:
    """An ordered set of KEKs (first = primary) plus the blind-index key.

    Instances are immutable: :meth:`rotate` returns a new keyring.
    """

    __slots__ = ("_aeads", "_ids", "_index_key")

    def __init__(self, keks: Sequence[tuple[str, bytes]], index_key: bytes) -> None:
        if not keks:
            raise ConfigurationError("keyring has no key-encryption keys")
        ids: list[str] = []
        aeads: dict[str, AESGCM] = {}
        for key_id, key in keks:
            if not isinstance(key_id, str) or not _KEY_ID_RE.fullmatch(key_id):
                raise ConfigurationError("keyring contains an invalid key id")
            if key_id in aeads:
                raise ConfigurationError(f"keyring contains key id {key_id!r} twice")
            if not isinstance(key, bytes) or len(key) != KEY_SIZE:
                raise ConfigurationError(f"key {key_id!r} must be {KEY_SIZE} bytes")
            ids.append(key_id)
            aeads[key_id] = AESGCM(key)
        if not isinstance(index_key, bytes) or len(index_key) != KEY_SIZE:
            raise ConfigurationError(f"index key must be {KEY_SIZE} bytes")
        self._ids = tuple(ids)
        # Only AESGCM objects are kept, so the raw KEKs are not lying around as attributes.
        self._aeads = aeads
        self._index_key = index_key

    # -- file handling -------------------------------------------------------------------

    @classmethod
    def generate(cls, path: os.PathLike[str] | str) -> Keyring:
        """Create a new key file at ``path`` (mode 0600) and return its keyring.

        Refuses to overwrite an existing file: losing a KEK loses every case wrapped by it.
        """
        path = Path(path)
        keks = [(_new_key_id(), secrets.token_bytes(KEY_SIZE))]
        index_key = secrets.token_bytes(KEY_SIZE)
        payload = _serialise(keks, index_key)
        try:
            # O_EXCL makes "refuse to overwrite" race-free; the mode is set at creation so
            # the keys are never readable by others, not even briefly.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise ConfigurationError(
                f"key file {str(path)!r} already exists; refusing to overwrite it"
            ) from None
        except OSError as exc:
            raise ConfigurationError(
                f"cannot create key file {str(path)!r}: {exc.strerror}"
            ) from None
        try:
            _write_all(fd, payload)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            # A half-written key file would only be refused later; remove it now.
            path.unlink(missing_ok=True)
            raise
        os.close(fd)
        _fsync_dir(path.parent)
        return cls(keks, index_key)

    @classmethod
    def load(cls, path: os.PathLike[str] | str) -> Keyring:
        """Read the key file at ``path``; raise ConfigurationError saying what is wrong."""
        keks, index_key = _read_key_file(Path(path))
        return cls(keks, index_key)

    @classmethod
    def rotate(cls, path: os.PathLike[str] | str) -> Keyring:
        """Add a fresh primary KEK to the key file at ``path`` and return the new keyring.

        The file, not an in-memory keyring, is the source of truth, so a stale keyring
        object can never drop keys that were added since it was loaded (this also works when
        called on an instance). Older KEKs stay for unwrapping; ``index_key`` is unchanged.
        The file is replaced atomically, under an exclusive lock so that two concurrent
        rotations cannot lose each other's key.
        """
        path = Path(path)
        with _exclusive_lock(path):
            old_keks, index_key = _read_key_file(path)
            new_id = _new_key_id()
            while any(new_id == key_id for key_id, _ in old_keks):
                new_id = _new_key_id()
            keks = [(new_id, secrets.token_bytes(KEY_SIZE)), *old_keks]
            keyring = cls(keks, index_key)
            _replace_file(path, _serialise(keks, index_key))
        return keyring

    # -- properties ----------------------------------------------------------------------

    @property
    def primary_id(self) -> str:
        """Id of the KEK that wraps new data keys."""
        return self._ids[0]

    @property
    def key_ids(self) -> tuple[str, ...]:
        """All KEK ids, primary first."""
        return self._ids

    @property
    def index_key(self) -> bytes:
        """The long-lived 32-byte key for blind indexes (see :class:`BlindIndex`)."""
        return self._index_key

    # -- wrapping ------------------------------------------------------------------------

    def wrap(self, data_key: bytes, *, context: str) -> bytes:
        """Encrypt ``data_key`` under the primary KEK, bound to ``context``."""
        if not isinstance(data_key, bytes | bytearray) or len(data_key) != KEY_SIZE:
            raise ValueError(f"data key must be {KEY_SIZE} bytes")
        header = _wrap_header(self.primary_id)
        nonce = secrets.token_bytes(_NONCE_SIZE)
        sealed = self._aeads[self.primary_id].encrypt(
            nonce, bytes(data_key), header + context.encode("utf-8")
        )
        return header + nonce + sealed

    def unwrap(self, wrapped: bytes, *, context: str) -> bytes:
        """Decrypt a wrapped data key with whichever KEK wrapped it.

        Raises KeyUnavailableError if that KEK is not in this keyring and IntegrityError if
        the wrapped key is malformed, tampered with, or was bound to another context.
        """
        key_id, header_len = _parse_header(wrapped)
        aead = self._aeads.get(key_id)
        if aead is None:
            raise KeyUnavailableError(f"key-encryption key {key_id!r} is not in the keyring")
        body = wrapped[header_len:]
        if len(body) != _NONCE_SIZE + KEY_SIZE + _TAG_SIZE:
            raise IntegrityError("wrapped data key has the wrong length")
        nonce, sealed = body[:_NONCE_SIZE], body[_NONCE_SIZE:]
        try:
            return aead.decrypt(nonce, sealed, wrapped[:header_len] + context.encode("utf-8"))
        except InvalidTag:
            raise IntegrityError(
                f"wrapped data key failed authentication under key {key_id!r} "
                "(tampered, or wrapped for another context)"
            ) from None

    def wrapped_key_id(self, wrapped: bytes) -> str:
        """Return the id of the KEK that ``wrapped`` claims to be wrapped under."""
        return _parse_header(wrapped)[0]

    def needs_rewrap(self, wrapped: bytes) -> bool:
        """True when ``wrapped`` is not under the current primary KEK."""
        return self.wrapped_key_id(wrapped) != self.primary_id

    def rewrap(self, wrapped: bytes, *, context: str) -> bytes:
        """Return ``wrapped`` re-wrapped under the primary KEK.

        The input is always authenticated first; if it is already under the primary it is
        returned unchanged, so re-wrapping a whole table is idempotent.
        """
        data_key = self.unwrap(wrapped, context=context)
        if not self.needs_rewrap(wrapped):
            return wrapped
        return self.wrap(data_key, context=context)

    def __repr__(self) -> str:
        return f"Keyring(primary_id={self.primary_id!r}, key_ids={self._ids!r})"


# -- wrapped-key format --------------------------------------------------------------------


def _wrap_header(key_id: str) -> bytes:
    encoded = key_id.encode("ascii")
    return bytes((_WRAP_FORMAT, len(encoded))) + encoded


def _parse_header(wrapped: bytes) -> tuple[str, int]:
    """Return (key id, header length); malformed input is an integrity failure."""
    if not isinstance(wrapped, bytes | bytearray | memoryview):
        raise TypeError("wrapped data key must be bytes")
    wrapped = bytes(wrapped)
    if len(wrapped) < 2 or wrapped[0] != _WRAP_FORMAT:
        raise IntegrityError("wrapped data key has an unknown format")
    end = 2 + wrapped[1]
    try:
        key_id = wrapped[2:end].decode("ascii")
    except UnicodeDecodeError:
        key_id = ""
    if len(wrapped) < end or not _KEY_ID_RE.fullmatch(key_id):
        raise IntegrityError("wrapped data key has a malformed key id")
    return key_id, end


# -- key file ------------------------------------------------------------------------------


def _b64(key: bytes) -> str:
    return base64.b64encode(key).decode("ascii")


def _serialise(keks: Sequence[tuple[str, bytes]], index_key: bytes) -> bytes:
    document = {
        "format": _FILE_FORMAT,
        "version": _FILE_VERSION,
        "keks": [{"id": key_id, "key": _b64(key)} for key_id, key in keks],
        "index_key": _b64(index_key),
    }
    return (json.dumps(document, indent=2) + "\n").encode("utf-8")


def _decode_key(value: object, what: str, path: Path) -> bytes:
    try:
        if not isinstance(value, str):
            raise ValueError
        key = base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error):
        raise ConfigurationError(f"key file {str(path)!r}: {what} is not valid base64") from None
    if len(key) != KEY_SIZE:
        raise ConfigurationError(f"key file {str(path)!r}: {what} must be {KEY_SIZE} bytes")
    return key


def _read_key_file(path: Path) -> tuple[list[tuple[str, bytes]], bytes]:
    where = f"key file {str(path)!r}"
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise ConfigurationError(f"{where} does not exist") from None
    except OSError as exc:
        raise ConfigurationError(f"cannot open {where}: {exc.strerror}") from None
    try:
        # fstat on the open descriptor, so the checked file is the one that is read.
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigurationError(f"{where} is not a regular file")
        mode = stat.S_IMODE(info.st_mode)
        if os.name == "posix" and mode & 0o077:
            raise ConfigurationError(
                f"{where} has mode {mode:04o}; it must not be accessible by group or others "
                "(run chmod 600)"
            )
        if info.st_size > _MAX_FILE_SIZE:
            raise ConfigurationError(f"{where} is too large to be a key file")
        raw = _read_all(fd)
    finally:
        os.close(fd)

    # "from None" throughout: a chained JSONDecodeError would carry the whole file (.doc).
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ConfigurationError(f"{where} is not valid JSON") from None
    if not isinstance(document, dict) or document.get("format") != _FILE_FORMAT:
        raise ConfigurationError(f"{where} is not a CPMS keyring")
    if document.get("version") != _FILE_VERSION:
        raise ConfigurationError(
            f"{where} has unsupported format version {document.get('version')!r}"
        )
    entries = document.get("keks")
    if not isinstance(entries, list) or not entries:
        raise ConfigurationError(f"{where} lists no key-encryption keys")
    keks: list[tuple[str, bytes]] = []
    for position, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            raise ConfigurationError(f"{where}: entry {position} of 'keks' is malformed")
        key_id = entry["id"]
        if not _KEY_ID_RE.fullmatch(key_id):
            raise ConfigurationError(f"{where}: entry {position} of 'keks' has an invalid id")
        keks.append((key_id, _decode_key(entry.get("key"), f"key {key_id!r}", path)))
    index_key = _decode_key(document.get("index_key"), "index_key", path)
    try:
        # Re-run the constructor's checks (duplicate ids) with the file named in the message.
        Keyring(keks, index_key)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{where}: {exc}") from None
    return keks, index_key


@contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on the key file currently at ``path``.

    The file is swapped by os.replace, so after getting the lock we check that ``path``
    still names the locked inode; otherwise a waiter would rotate a stale copy.
    """
    if fcntl is None:  # pragma: no cover - not POSIX; rotation is a rare admin action
        yield
        return
    while True:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise ConfigurationError(f"key file {str(path)!r} does not exist") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            locked = os.fstat(fd)
            try:
                current = os.stat(path)
            except FileNotFoundError:
                continue
            if (locked.st_dev, locked.st_ino) == (current.st_dev, current.st_ino):
                yield
                return
        finally:
            os.close(fd)


def _replace_file(path: Path, payload: bytes) -> None:
    """Atomically replace ``path``: temp file (0600) in the same directory, fsync, rename."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            _write_all(fd, payload)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _fsync_dir(directory: Path) -> None:
    # Makes the new directory entry durable; not possible (nor needed) on every platform.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
