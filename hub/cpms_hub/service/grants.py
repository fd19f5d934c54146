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

:class:`ImageGrants` is what a router of images (slides, DICOM series) uses: it issues
grants of one kind and verifies them, auditing each grant's first use once (``slide.view``,
``dicom.view``) rather than once per tile or frame. Each process remembers the nonces it
has seen (a bounded set, so no database access per tile); on a nonce it has not seen it
looks the nonce up in ``grant_uses`` (by primary key), where another worker process
(``CPMS_STORE_WORKERS``) or this one, before the set let the nonce go, recorded it, under
the lock appends take, and only if it is not there writes the audit entry and the nonce
in one transaction: once per grant across all workers. Nonces of expired grants are
deleted as new ones are recorded (an expired grant is refused before this step). If the
audit write fails the request fails and the nonce is forgotten, so a later request with
the same grant writes the entry.

A viewer sends the same grant with every tile, so :class:`GrantIssuer` remembers the
grants it has verified, keyed by the grant's SHA-256 (never by its text, which is a
credential), until they expire: a repeated grant costs one hash instead of base64, HMAC
and JSON. Only grants whose tag checked out are remembered (a forged grant cannot fill
the memory), the case/image scope and the expiry are checked on every use, and the
memory is bounded (:data:`MAX_VERIFIED_GRANTS`, oldest first out).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import delete, select

from cpms_hub.domain.errors import AuthenticationError
from cpms_hub.store.database import session_scope
from cpms_hub.store.schema import AuditHeadRow, GrantUseRow

__all__ = [
    "GRANT_HEADER",
    "MAX_SEEN_NONCES",
    "MAX_VERIFIED_GRANTS",
    "GrantClaims",
    "GrantIssuer",
    "ImageGrants",
    "grant_secret",
]

#: the request header that carries a grant (never a query parameter: URLs end up in logs)
GRANT_HEADER = "X-CPMS-Grant"

_VERSION = 1
#: grants longer than this are refused before any work is done on them
_MAX_GRANT_CHARS = 1024
#: nonces of grants already audited, per router; ~100 bytes each, so about 10 MB at most
MAX_SEEN_NONCES = 100_000
#: verified grants remembered per issuer; ~300 bytes each, so about 3 MB at most
MAX_VERIFIED_GRANTS = 10_000

_LOCK_HEAD = select(AuditHeadRow.id).where(AuditHeadRow.id == 1).with_for_update()


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
        self,
        secret: bytes,
        ttl: int = 300,
        *,
        clock: Callable[[], float] = time.time,
        max_verified: int = MAX_VERIFIED_GRANTS,
    ) -> None:
        if len(secret) < 32:
            raise ValueError("grant secret must be at least 32 bytes")
        self._secret = secret
        self.ttl = ttl
        self._clock = clock
        self._max_verified = max_verified
        #: SHA-256 of a grant whose tag and payload checked out -> its claims
        self._verified: OrderedDict[bytes, GrantClaims] = OrderedDict()
        self._lock = threading.Lock()

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
        if len(grant) > _MAX_GRANT_CHARS:
            raise AuthenticationError("grant invalid", reasons=(f"{GRANT_HEADER}: invalid",))
        digest = hashlib.sha256(grant.encode("utf-8", "surrogatepass")).digest()
        # a plain dict read, safe without the lock (the GIL makes it atomic)
        claims = self._verified.get(digest)
        if claims is None:
            claims = self._check(grant)
            with self._lock:
                self._verified[digest] = claims
                while len(self._verified) > self._max_verified:
                    self._verified.popitem(last=False)
        # scope and expiry on every use, remembered or not
        # compare_digest: grant scope must not leak through timing
        same_case = hmac.compare_digest(claims.case_id.encode(), case_id.encode())
        same_image = hmac.compare_digest(claims.image_id.encode(), image_id.encode())
        if not (same_case and same_image):
            raise AuthenticationError("grant invalid", reasons=(f"{GRANT_HEADER}: invalid",))
        if claims.expires_at <= self._clock():
            with self._lock:
                self._verified.pop(digest, None)
            raise AuthenticationError("grant expired", reasons=(f"{GRANT_HEADER}: expired",))
        return claims

    def _check(self, grant: str) -> GrantClaims:
        """The claims of a grant whose tag is right (its scope and expiry not checked)."""
        invalid = AuthenticationError("grant invalid", reasons=(f"{GRANT_HEADER}: invalid",))
        if grant.count(".") != 1:
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
        return GrantClaims(str(user), str(g_case), str(g_image), expiry, str(nonce))


class ImageGrants:
    """Grants for one kind of image, with each grant's first use audited once.

    ``kind`` names the audit action (``f"{kind}.view"``) and ``label`` the image in the
    entry's detail (``series=…``); ``scope_prefix`` keeps the grants of one kind from
    opening another kind's image of the same id (``"dicom:"``).
    """

    def __init__(
        self,
        state,  # noqa: ANN001 - cpms_hub.state.State
        *,
        kind: str,
        label: str,
        scope_prefix: str = "",
        ttl: int = 300,
        max_seen: int = MAX_SEEN_NONCES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuer = GrantIssuer(grant_secret(state.keyring), ttl=ttl, clock=clock)
        self._clock = clock
        self._state = state
        self._action = f"{kind}.view"
        self._label = label
        self._prefix = scope_prefix
        self._max_seen = max_seen
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def ttl(self) -> int:
        return self.issuer.ttl

    def issue(self, user: str, case_id: str, image_id: str) -> dict:
        """A new grant as the JSON answer of a grant route: grant, header, expiry, ttl."""
        token = self.issuer.issue(user, case_id, self._prefix + image_id)
        expires = datetime.fromtimestamp(self.issuer.expires_at(token), UTC)
        return {
            "grant": token,
            "header": GRANT_HEADER,
            "expires_at": expires.isoformat(),
            "ttl": self.issuer.ttl,
        }

    def already_seen(self, grant: str | None, case_id: str, image_id: str) -> GrantClaims | None:
        """The claims of a valid grant whose first use was audited, or None (then call
        :meth:`verify`, which may write). No database access: safe on the event loop."""
        claims = self.issuer.verify(grant, case_id, self._prefix + image_id)
        with self._lock:
            return claims if claims.nonce in self._seen else None

    def verify(self, grant: str | None, case_id: str, image_id: str, client: str) -> GrantClaims:
        """The claims of a valid grant (401 otherwise); its first use writes one audit entry."""
        claims = self.issuer.verify(grant, case_id, self._prefix + image_id)
        with self._lock:
            fresh = claims.nonce not in self._seen
            if fresh:
                self._seen[claims.nonce] = None
                while len(self._seen) > self._max_seen:
                    self._seen.popitem(last=False)
        if fresh:
            detail = f"{self._label}={image_id} grant={claims.nonce}"
            try:
                with session_scope(self._state.sessions) as s:
                    # another worker process may have seen this grant first: the chain's
                    # head is locked as for an append (SQLite: the writers' flock), so
                    # the look-up and the append are one step for every process
                    s.execute(_LOCK_HEAD)
                    if s.get(GrantUseRow, claims.nonce) is None:
                        now = datetime.fromtimestamp(self._clock(), UTC)
                        s.execute(delete(GrantUseRow).where(GrantUseRow.expires_at <= now))
                        s.add(
                            GrantUseRow(
                                nonce=claims.nonce,
                                expires_at=datetime.fromtimestamp(claims.expires_at, UTC),
                            )
                        )
                        self._state.audit.append(
                            s,
                            actor=claims.user,
                            action=self._action,
                            outcome="allowed",
                            client=client,
                            case_id=case_id,
                            detail=detail,
                        )
            except BaseException:
                # requests racing this one are served meanwhile; a later one writes the entry
                with self._lock:
                    self._seen.pop(claims.nonce, None)
                raise
        return claims
