"""Blind indexes: deterministic keyed digests for exact look-ups on encrypted columns.

Encrypted fields use random nonces, so equal plaintexts give different ciphertexts and cannot
be searched. Next to such a field the database stores a blind index: HMAC-SHA256 (RFC 2104)
of the normalised value under a secret key. Equal values give equal indexes; without the key
an index reveals nothing useful and cannot be brute-forced offline.

Every *purpose* (for example ``"pseudonym"`` or ``"email"``) gets its own subkey, derived
from the keyring's index key with HKDF-SHA256 (RFC 5869), and the purpose is also prefixed
to the MAC input. Indexes of different purposes therefore cannot be compared with each
other, which stops an attacker with database access from learning that a pseudonym equals
somebody's e-mail address.

Values are normalised before hashing so that trivially different spellings match: Unicode
NFC, surrounding whitespace stripped, and case-folded (then NFC again, because case folding
can denormalise). Inner whitespace is kept: it can be significant.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import unicodedata

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["BlindIndex"]

_KEY_SIZE = 32
_HKDF_INFO_PREFIX = b"cpms-blind-index:"
_U32 = struct.Struct(">I")


class BlindIndex:
    """Computes blind indexes under the keyring's 32-byte index key."""

    __slots__ = ("_index_key", "_subkeys")

    def __init__(self, index_key: bytes) -> None:
        if not isinstance(index_key, bytes | bytearray) or len(index_key) != _KEY_SIZE:
            raise ValueError(f"index key must be {_KEY_SIZE} bytes")
        self._index_key = bytes(index_key)
        # HKDF per call would dominate the cost of a look-up; purposes are few.
        self._subkeys: dict[str, bytes] = {}

    @staticmethod
    def normalise(value: str) -> str:
        """Return the form of ``value`` that is actually indexed."""
        folded = unicodedata.normalize("NFC", value).strip().casefold()
        return unicodedata.normalize("NFC", folded)

    def compute(self, value: str, *, purpose: str) -> str:
        """Return the hex HMAC-SHA256 blind index of ``value`` for ``purpose``."""
        if not isinstance(value, str):
            raise TypeError("blind index values must be str")
        if not purpose:
            raise ValueError("a blind index needs a non-empty purpose")
        subkey = self._subkeys.get(purpose)
        if subkey is None:
            subkey = HKDF(
                algorithm=hashes.SHA256(),
                length=_KEY_SIZE,
                salt=None,
                info=_HKDF_INFO_PREFIX + purpose.encode("utf-8"),
            ).derive(self._index_key)
            self._subkeys[purpose] = subkey
        label = purpose.encode("utf-8")
        message = _U32.pack(len(label)) + label + self.normalise(value).encode("utf-8")
        return hmac.new(subkey, message, hashlib.sha256).hexdigest()

    def __repr__(self) -> str:
        return "BlindIndex(<index key hidden>)"
