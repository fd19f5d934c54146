"""Cryptography for CPMS: envelope encryption of case data.

* :mod:`.keyring` - key-encryption keys in a key file outside the database; wraps the
  random per-case data keys (AES-256-GCM, NIST SP 800-38D) and supports rotation.
* :mod:`.fields` - AES-256-GCM encryption of database fields, bound to table, row, field and
  schema version through the associated data.
* :mod:`.blind_index` - HMAC-SHA256 (RFC 2104) blind indexes with HKDF (RFC 5869) per-purpose
  subkeys, for exact look-ups on encrypted fields.
* :mod:`.segmented` - random-access segmented blob encryption after Tink's streaming AEAD
  (AES-GCM-HKDF).

This package depends only on the standard library, ``cryptography`` and
:mod:`cpms_hub.domain.errors`.
"""

from cpms_hub.crypto.blind_index import BlindIndex
from cpms_hub.crypto.fields import FieldCipher
from cpms_hub.crypto.keyring import KEY_SIZE, Keyring, new_data_key
from cpms_hub.crypto.segmented import (
    DEFAULT_SEGMENT_SIZE,
    HEADER_SIZE,
    MAX_SEGMENT_SIZE,
    MIN_SEGMENT_SIZE,
    TAG_SIZE,
    SegmentedReader,
    SegmentedWriter,
    encrypt_file,
    iter_plaintext,
)

__all__ = [
    "DEFAULT_SEGMENT_SIZE",
    "HEADER_SIZE",
    "KEY_SIZE",
    "MAX_SEGMENT_SIZE",
    "MIN_SEGMENT_SIZE",
    "TAG_SIZE",
    "BlindIndex",
    "FieldCipher",
    "Keyring",
    "SegmentedReader",
    "SegmentedWriter",
    "encrypt_file",
    "iter_plaintext",
    "new_data_key",
]
