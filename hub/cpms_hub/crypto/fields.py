"""Authenticated encryption of individual database fields with a case's data key.

Each sensitive column value is sealed with AES-256-GCM (NIST SP 800-38D) under the data key
of the case it belongs to. The stored value is::

    format (1 byte, 0x01) | nonce (12 random bytes) | ciphertext | tag (16)

Random 96-bit nonces are safe here because one data key protects only one case's fields,
orders of magnitude below the SP 800-38D bound of 2**32 invocations per key.

The associated data binds the value to where it lives: (table, row id, field, schema
version). Copying a ciphertext into another row or column, or replaying it under another
schema version, therefore fails authentication. The binding is a canonical encoding with a
length prefix on every string, so ("ab", "c") and ("a", "bc") can never collide the way a
naive concatenation would.
"""

from __future__ import annotations

import secrets
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cpms_hub.domain.errors import IntegrityError

__all__ = ["FieldCipher"]

_FORMAT = 0x01
_FORMAT_BYTE = bytes((_FORMAT,))
_NONCE_SIZE = 12
_TAG_SIZE = 16
_KEY_SIZE = 32
# Domain separation: this AAD can never be mistaken for one built by another component.
_AAD_LABEL = b"cpms-field-v1"
_U32 = struct.Struct(">I")


def _associated_data(table: str, row_id: str, field: str, schema_version: int) -> bytes:
    if not 0 <= schema_version < 2**32:
        raise ValueError("schema_version must fit in an unsigned 32-bit integer")
    parts = [_AAD_LABEL]
    for name in (table, row_id, field):
        encoded = name.encode("utf-8")
        parts.append(_U32.pack(len(encoded)))
        parts.append(encoded)
    parts.append(_U32.pack(schema_version))
    return b"".join(parts)


class FieldCipher:
    """Encrypts and decrypts field values under one case's 32-byte data key."""

    __slots__ = ("_aead",)

    def __init__(self, data_key: bytes) -> None:
        if not isinstance(data_key, bytes | bytearray) or len(data_key) != _KEY_SIZE:
            raise ValueError(f"data key must be {_KEY_SIZE} bytes")
        # One AESGCM per cipher: the key schedule is computed once, not per field.
        self._aead = AESGCM(bytes(data_key))

    def encrypt(
        self,
        plaintext: bytes | str,
        *,
        table: str,
        row_id: str,
        field: str,
        schema_version: int = 1,
    ) -> bytes:
        """Seal ``plaintext`` (str is encoded as UTF-8) for the given table/row/field."""
        if isinstance(plaintext, str):
            plaintext = plaintext.encode("utf-8")
        aad = _associated_data(table, row_id, field, schema_version)
        nonce = secrets.token_bytes(_NONCE_SIZE)
        return _FORMAT_BYTE + nonce + self._aead.encrypt(nonce, plaintext, aad)

    def decrypt(
        self,
        ciphertext: bytes,
        *,
        table: str,
        row_id: str,
        field: str,
        schema_version: int = 1,
    ) -> bytes:
        """Open a value sealed by :meth:`encrypt`; any mismatch raises IntegrityError."""
        aad = _associated_data(table, row_id, field, schema_version)
        where = f"{table}.{field}"
        if len(ciphertext) < 1 + _NONCE_SIZE + _TAG_SIZE or ciphertext[0] != _FORMAT:
            raise IntegrityError(f"encrypted value of {where} is malformed")
        nonce = ciphertext[1 : 1 + _NONCE_SIZE]
        try:
            return self._aead.decrypt(nonce, ciphertext[1 + _NONCE_SIZE :], aad)
        except InvalidTag:
            # Deliberately vague about the cause: wrong key, tampering and a value moved
            # from another row are indistinguishable, and the row is not named.
            raise IntegrityError(
                f"encrypted value of {where} failed authentication "
                "(tampered, moved from another row or field, or wrong key)"
            ) from None

    def encrypt_text(
        self, text: str, *, table: str, row_id: str, field: str, schema_version: int = 1
    ) -> bytes:
        """Seal a str (UTF-8); counterpart of :meth:`decrypt_text`."""
        return self.encrypt(
            text.encode("utf-8"),
            table=table,
            row_id=row_id,
            field=field,
            schema_version=schema_version,
        )

    def decrypt_text(
        self, ciphertext: bytes, *, table: str, row_id: str, field: str, schema_version: int = 1
    ) -> str:
        """Open a value sealed by :meth:`encrypt_text` and decode it as UTF-8."""
        plaintext = self.decrypt(
            ciphertext, table=table, row_id=row_id, field=field, schema_version=schema_version
        )
        try:
            return plaintext.decode("utf-8")
        except UnicodeDecodeError:
            raise IntegrityError(f"encrypted value of {table}.{field} is not text") from None

    def __repr__(self) -> str:
        return "FieldCipher(<data key hidden>)"
