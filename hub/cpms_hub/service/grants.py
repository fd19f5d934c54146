"""Short-lived grants that let a browser viewer fetch the tiles of one image.

A viewer (OpenSeadragon inside an anywidget, in JupyterLab or a Panel app) fetches tiles
straight from the store service. It must not hold the user's bearer token (that would put
a long-lived, all-purpose credential in browser JavaScript) and bearer tokens never go
into URLs. Instead the kernel or Panel app, authenticated as the user, asks the service
for a *grant*: an opaque, URL-safe string scoped to one user, one case and one image,
valid for a few minutes. The viewer sends it in the ``X-CPMS-Grant`` header.

Format (version 1): ``base64url(payload) "." base64url(HMAC-SHA256(secret, payload))``
where the payload is the JSON array ``[1, user, case_id, image_id, expiry, nonce]``. The
tag is checked with :func:`hmac.compare_digest` (constant time) before the payload is
parsed, so a forged grant is rejected without its content being interpreted.

The secret is derived from the keyring's index key with HKDF-SHA256 (info
``b"cpms-grants"``) by :func:`grant_secret`, so no new key file is needed and grants
become invalid when the keyring is replaced. It is a *separate* key from the blind index
key (HKDF output with its own label), so grants reveal nothing about blind indexes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cpms_hub.domain.errors import AuthenticationError

__all__ = ["GRANT_HEADER", "GrantClaims", "GrantIssuer", "grant_secret"]

#: the request header that carries a grant (never a query parameter: URLs end up in logs)
GRANT_HEADER = "X-CPMS-Grant"

_VERSION = 1
#: grants longer than this are refused before any work is done on them
_MAX_GRANT_CHARS = 1024


def grant_secret(keyring) -> bytes:  # noqa: ANN001 - cpms_hub.crypto.Keyring
    """The HMAC key of grants, derived from the keyring's long-lived index key."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"cpms-grants").derive(
        keyring.index_key
    )


@dataclass(frozen=True, slots=True)
class GrantClaims:
    """What a verified grant says: who may view which image, until when (epoch seconds)."""

    user: str
    case_id: str
    image_id: str
    expires_at: int
    nonce: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class GrantIssuer:
    """Issues and verifies grants under one secret; ``ttl`` in seconds."""

    def __init__(
        self, secret: bytes, ttl: int = 300, *, clock: Callable[[], float] = time.time
    ) -> None:
        if len(secret) < 32:
            raise ValueError("grant secret must be at least 32 bytes")
        self._secret = secret
        self.ttl = ttl
        self._clock = clock

    def _tag(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, hashlib.sha256).digest()

    def issue(self, user: str, case_id: str, image_id: str) -> str:
        """A new grant for ``user`` to view ``image_id`` of ``case_id`` for ``ttl`` seconds."""
        expiry = int(self._clock()) + self.ttl
        nonce = secrets.token_urlsafe(12)
        payload = json.dumps(
            [_VERSION, user, case_id, image_id, expiry, nonce], separators=(",", ":")
        ).encode()
        return f"{_b64(payload)}.{_b64(self._tag(payload))}"

    def expires_at(self, grant: str) -> int:
        """The expiry (epoch seconds) of a grant this issuer just made (not verified)."""
        return int(json.loads(_unb64(grant.partition(".")[0]))[4])

    def verify(self, grant: str | None, case_id: str, image_id: str) -> GrantClaims:
        """The claims of a valid, unexpired grant for exactly this case and image.

        Raises AuthenticationError (401) otherwise; the reason never says which check
        failed beyond "missing", "invalid" or "expired", and never echoes the grant.
        """
        if not grant:
            raise AuthenticationError("grant missing", reasons=(f"{GRANT_HEADER}: missing",))
        invalid = AuthenticationError("grant invalid", reasons=(f"{GRANT_HEADER}: invalid",))
        if len(grant) > _MAX_GRANT_CHARS or grant.count(".") != 1:
            raise invalid
        body, _, tag = grant.partition(".")
        try:
            payload, given = _unb64(body), _unb64(tag)
        except ValueError:
            raise invalid from None
        # constant time: a timing side channel must not reveal how much of a tag is right
        if not hmac.compare_digest(self._tag(payload), given):
            raise invalid
        try:
            version, user, g_case, g_image, expiry, nonce = json.loads(payload)
        except (ValueError, TypeError):
            raise invalid from None
        if version != _VERSION or not isinstance(expiry, int):
            raise invalid
        # compare_digest here too: grant scope must not leak through timing either
        same_case = hmac.compare_digest(str(g_case).encode(), case_id.encode())
        same_image = hmac.compare_digest(str(g_image).encode(), image_id.encode())
        if not (same_case and same_image):
            raise invalid
        if expiry <= self._clock():
            raise AuthenticationError("grant expired", reasons=(f"{GRANT_HEADER}: expired",))
        return GrantClaims(str(user), str(g_case), str(g_image), expiry, str(nonce))
