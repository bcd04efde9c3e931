"""API v2 request authentication (contract Decision 4, reliability.md §2.2), for any HTTP service.

A client signs every request with one of its keys (table ``api_keys``) and sends::

    X-Client-Id:      the client (``[A-Za-z0-9._-]{1,64}``)
    X-Key-Id:         which of its keys signed (same alphabet)
    X-Timestamp:      unix seconds, within ±300 s of the server clock
    X-Nonce:          16-64 characters of ``[A-Za-z0-9_-]`` (e.g. 128-bit random, base64url)
    X-Content-SHA256: lowercase hex SHA-256 of the exact body bytes (of b"" for a GET)
    X-Signature:      ``v2=<hex HMAC-SHA256(secret, v2_string_to_sign(...))>``

The string to sign is :func:`gen_common.signing.v2_string_to_sign` over the method, the raw path
(percent-encoding as sent), the canonical query, timestamp, nonce, body hash, client id and key id.

:func:`verify` checks, in this order: header syntax, the key (status ``active`` or ``retiring``,
inside ``not_before``/``not_after``, client not disabled), the body hash, the signature
(``hmac.compare_digest``), the timestamp window, and last the nonce (``INSERT ... ON CONFLICT DO
NOTHING``: a second use is a replay). The signature is checked before the nonce table is touched, so
unauthenticated traffic cannot fill it. Every failure is an :class:`AuthError` (answer 401 with a
uniform body; the ``reason`` is for logs and metrics only); nothing here raises anything else for
bad input.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass

from gen_common.db import Conn
from gen_common.errors import BadSignature
from gen_common.signing import body_sha256, hmac_hex, v2_string_to_sign

SCHEME = "v2="
OPENAPI_SECURITY_SCHEME = {  # how the HTTP services describe this scheme in their OpenAPI
    "type": "apiKey",
    "in": "header",
    "name": "X-Signature",
    "description": "v2=<hex HMAC>; with X-Client-Id, X-Key-Id, X-Timestamp, X-Nonce, "
    "X-Content-SHA256 (gen_common.request_auth)",
}
DEFAULT_SKEW_S = 300
_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
HEADER_NAMES = (
    "x-client-id",
    "x-key-id",
    "x-timestamp",
    "x-nonce",
    "x-content-sha256",
    "x-signature",
)


class AuthError(BadSignature):
    """A v2 request that does not authenticate; ``reason`` says why (never sent to clients)."""

    code = "unauthorized"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class SignedHeaders:
    client_id: str
    key_id: str
    timestamp: str
    nonce: str
    content_sha256: str
    signature: str  # lowercase hex, without the scheme prefix


@dataclass(frozen=True, slots=True)
class Verified:
    client_id: str
    key_id: str


def _one(headers: Mapping[str, str], name: str, pattern: re.Pattern[str]) -> str:
    value = headers.get(name)
    if value is None:
        raise AuthError(f"missing {name}")
    if not pattern.fullmatch(value):
        raise AuthError(f"malformed {name}")
    return value


def parse_headers(headers: Mapping[str, str]) -> SignedHeaders:
    """Strictly parse the six headers (names lower case, as ASGI delivers them)."""
    signature = headers.get("x-signature")
    if signature is None:
        raise AuthError("missing x-signature")
    if not signature.startswith(SCHEME) or not _HEX64.fullmatch(signature[len(SCHEME) :]):
        raise AuthError("malformed x-signature")
    return SignedHeaders(
        client_id=_one(headers, "x-client-id", _ID),
        key_id=_one(headers, "x-key-id", _ID),
        timestamp=_one(headers, "x-timestamp", _TIMESTAMP),
        nonce=_one(headers, "x-nonce", _NONCE),
        content_sha256=_one(headers, "x-content-sha256", _HEX64).lower(),
        signature=signature[len(SCHEME) :].lower(),
    )


def string_to_sign(h: SignedHeaders, *, method: str, path: str, query: str) -> bytes:
    return v2_string_to_sign(
        method=method,
        path=path,
        query=query,
        timestamp=h.timestamp,
        nonce=h.nonce,
        body_sha256=h.content_sha256,
        client_id=h.client_id,
        key_id=h.key_id,
    )


def sign(
    secret: bytes,
    *,
    client_id: str,
    key_id: str,
    method: str,
    path: str,
    query: str = "",
    body: bytes = b"",
    timestamp: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The client side: the six headers for one request."""
    h = SignedHeaders(
        client_id=client_id,
        key_id=key_id,
        timestamp=str(int(time.time()) if timestamp is None else timestamp),
        nonce=nonce or secrets.token_urlsafe(16),
        content_sha256=body_sha256(body),
        signature="",
    )
    mac = hmac_hex(secret, string_to_sign(h, method=method, path=path, query=query))
    return {
        "X-Client-Id": h.client_id,
        "X-Key-Id": h.key_id,
        "X-Timestamp": h.timestamp,
        "X-Nonce": h.nonce,
        "X-Content-SHA256": h.content_sha256,
        "X-Signature": SCHEME + mac,
    }


async def load_secret(conn: Conn, client_id: str, key_id: str) -> bytes | None:
    """The secret of a key that may verify right now, or None."""
    row = await conn.fetchrow(
        """SELECT k.secret FROM api_keys k JOIN api_clients c USING (client_id)
           WHERE k.client_id = $1 AND k.key_id = $2 AND c.status = 'active'
             AND k.status IN ('active', 'retiring') AND k.not_before <= now()
             AND (k.not_after IS NULL OR k.not_after > now())""",
        client_id,
        key_id,
    )
    return None if row is None else bytes(row["secret"])


async def remember_nonce(conn: Conn, client_id: str, nonce: str) -> bool:
    """True the first time a nonce is seen for this client; False for a replay."""
    inserted = await conn.fetchval(
        """INSERT INTO request_nonces (client_id, nonce) VALUES ($1, $2)
           ON CONFLICT DO NOTHING RETURNING true""",
        client_id,
        nonce,
    )
    return bool(inserted)


async def purge_nonces(conn: Conn, *, older_than_s: float = 2 * DEFAULT_SKEW_S) -> int:
    status = await conn.execute(
        "DELETE FROM request_nonces WHERE seen_at < now() - make_interval(secs => $1)",
        float(older_than_s),
    )
    return int(status.split()[-1])


async def verify(
    conn: Conn,
    *,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    body: bytes | bytearray,
    skew_s: int = DEFAULT_SKEW_S,
    now: float | None = None,
) -> Verified:
    """Authenticate one request or raise :class:`AuthError`."""
    h = await check_signature(
        conn,
        method=method,
        path=path,
        query=query,
        headers=headers,
        body=body,
        skew_s=skew_s,
        now=now,
    )
    if not await remember_nonce(conn, h.client_id, h.nonce):
        raise AuthError("replayed nonce")
    return Verified(client_id=h.client_id, key_id=h.key_id)


async def check_signature(
    conn: Conn,
    *,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    body: bytes | bytearray,
    skew_s: int = DEFAULT_SKEW_S,
    now: float | None = None,
) -> SignedHeaders:
    """Every check of :func:`verify` but the nonce (read-only: one round trip for the key).

    The caller MUST still record ``nonce`` (``remember_nonce``, or the same INSERT inside its own
    statement) and refuse the request as a replay when it was seen before.
    """
    h = parse_headers(headers)
    secret = await load_secret(conn, h.client_id, h.key_id)
    if secret is None:
        raise AuthError("unknown or inactive key")
    if not hmac.compare_digest(
        hashlib.sha256(body).hexdigest().encode(), h.content_sha256.encode()
    ):
        raise AuthError("body hash mismatch")
    expected = hmac_hex(secret, string_to_sign(h, method=method, path=path, query=query))
    if not hmac.compare_digest(expected.encode(), h.signature.encode()):
        raise AuthError("bad signature")
    current = time.time() if now is None else now
    if abs(current - int(h.timestamp)) > skew_s:
        raise AuthError("timestamp outside the window")
    return h


async def create_client(
    conn: Conn,
    client_id: str,
    *,
    name: str = "",
    rate_per_s: float | None = None,
    rate_burst: int | None = None,
) -> None:
    """Create a client (or update its name and limits)."""
    if not _ID.fullmatch(client_id):
        raise ValueError("client id must match [A-Za-z0-9._-]{1,64}")
    await conn.execute(
        """INSERT INTO api_clients (client_id, name, rate_per_s, rate_burst)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (client_id) DO UPDATE
           SET name = EXCLUDED.name, rate_per_s = EXCLUDED.rate_per_s,
               rate_burst = EXCLUDED.rate_burst""",
        client_id,
        name,
        rate_per_s,
        rate_burst,
    )


async def create_key(
    conn: Conn, client_id: str, *, key_id: str | None = None, secret: bytes | None = None
) -> tuple[str, bytes]:
    """Add an active key to an existing client; returns (key id, secret)."""
    key_id = key_id or "k" + secrets.token_hex(6)
    secret = secret if secret is not None else secrets.token_bytes(32)
    if not _ID.fullmatch(key_id):
        raise ValueError("key id must match [A-Za-z0-9._-]{1,64}")
    await conn.execute(
        "INSERT INTO api_keys (client_id, key_id, secret) VALUES ($1, $2, $3)",
        client_id,
        key_id,
        secret,
    )
    return key_id, secret


async def set_key_status(
    conn: Conn, client_id: str, key_id: str, status: str, *, not_after_s: float | None = None
) -> bool:
    """Move a key to active / retiring / revoked; ``not_after_s`` ends it that many seconds on."""
    result = await conn.execute(
        """UPDATE api_keys SET status = $3,
               not_after = CASE WHEN $4::float8 IS NULL THEN not_after
                                ELSE now() + make_interval(secs => $4::float8) END
           WHERE client_id = $1 AND key_id = $2""",
        client_id,
        key_id,
        status,
        not_after_s,
    )
    return result.endswith(" 1")
