"""Ed25519 signatures (RFC 8032) for panel outcomes, with ``cryptography``.

Keys are raw 32-byte values: the private half is kept only encrypted by the
store, the public half is stored in clear and shipped with each signature so
that anyone can verify it. Ed25519 signatures are deterministic, so signing the
same statement with the same key gives the same 64 bytes.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

__all__ = ["new_key_pair", "sign", "verify"]


def new_key_pair() -> tuple[bytes, bytes]:
    """A fresh ``(private, public)`` pair of raw 32-byte keys."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return private, public


def sign(private: bytes, message: bytes) -> bytes:
    return Ed25519PrivateKey.from_private_bytes(private).sign(message)


def verify(public: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True
