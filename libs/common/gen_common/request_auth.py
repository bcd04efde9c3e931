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
bad input. The headers, their parsing and the client's :func:`sign` are
:mod:`gen_common.signed_headers`; clients and keys are created and rotated with
:mod:`gen_common.api_keys` (every name stays importable from here).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass

from gen_common.api_keys import create_client as create_client
from gen_common.api_keys import create_key as create_key
from gen_common.api_keys import load_secret
from gen_common.api_keys import set_key_status as set_key_status
from gen_common.db import Conn
from gen_common.signed_headers import HEADER_NAMES as HEADER_NAMES
from gen_common.signed_headers import SCHEME as SCHEME
from gen_common.signed_headers import AuthError as AuthError
from gen_common.signed_headers import SignedHeaders as SignedHeaders
from gen_common.signed_headers import parse_headers as parse_headers
from gen_common.signed_headers import sign as sign
from gen_common.signed_headers import string_to_sign as string_to_sign
from gen_common.signing import hmac_hex

OPENAPI_SECURITY_SCHEME = {  # how the HTTP services describe this scheme in their OpenAPI
    "type": "apiKey",
    "in": "header",
    "name": "X-Signature",
    "description": "v2=<hex HMAC>; with X-Client-Id, X-Key-Id, X-Timestamp, X-Nonce, "
    "X-Content-SHA256 (gen_common.request_auth)",
}
DEFAULT_SKEW_S = 300


@dataclass(frozen=True, slots=True)
class Verified:
    client_id: str
    key_id: str


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
