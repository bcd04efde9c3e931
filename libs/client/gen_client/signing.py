"""The HMAC-SHA256 signatures of the Generation Service API, standalone (no server packages).

- **v1 body signature** (contract §2.1): hex HMAC over the ``lots`` value serialised exactly as
  Python's ``json.dumps(lots, separators=(",", ":"), sort_keys=True)`` does (ASCII escaping,
  Python float repr); sent in the body field ``signature``.
- **X-Signature** (contract §2.2, Decision 2): hex HMAC over the exact request body bytes.
- **v2 signed requests** (Decision 4): six ``X-*`` headers, HMAC over a canonical request string.
- **Standard Webhooks**: ``v1,<base64 HMAC(id.timestamp.body)>`` with a ``whsec_`` secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from urllib.parse import parse_qsl, quote

V2_SCHEME = "v2="


def canonical_json(value: object) -> bytes:
    """Sorted keys, compact separators, ``\\uXXXX`` for every non-ASCII character."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=True).encode()


def hmac_hex(key: bytes, message: bytes) -> str:
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def sign_lots(key: bytes, lots: object) -> str:
    """The v1 ``signature`` of a generate-descriptions request (and of a W2 webhook body)."""
    return hmac_hex(key, canonical_json(lots))


def same_hex(expected_hex: str, presented: object) -> bool:
    """Constant-time: does ``presented`` carry ``expected_hex`` (``sha256=`` prefix, any case)?"""
    if not isinstance(presented, str):
        return False
    value = presented.strip()
    if value[:7].lower() == "sha256=":
        value = value[7:]
    if len(value) != len(expected_hex) or not value.isascii():
        return False
    return hmac.compare_digest(value.lower().encode(), expected_hex.encode())


def body_sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def canonical_query(query: str) -> str:
    """The query as signed in v2: pairs sorted, RFC 3986 encoded, blank values kept."""
    pairs = parse_qsl(query, keep_blank_values=True)
    return "&".join(f"{quote(k, safe='-._~')}={quote(v, safe='-._~')}" for k, v in sorted(pairs))


def v2_string_to_sign(
    *,
    method: str,
    path: str,
    query: str,
    timestamp: str,
    nonce: str,
    body_sha256: str,
    client_id: str,
    key_id: str,
) -> bytes:
    """One field per line: ``v2``, method, raw path, canonical query, timestamp, nonce, body
    SHA-256, client id, key id."""
    fields = [
        "v2",
        method.upper(),
        path,
        canonical_query(query),
        timestamp,
        nonce,
        body_sha256.lower(),
        client_id,
        key_id,
    ]
    return "\n".join(fields).encode()


def v2_headers(
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
    """The six headers of one signed v2 request (``path`` as sent, percent-encoding included)."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    once = nonce or secrets.token_urlsafe(16)
    digest = body_sha256(body)
    message = v2_string_to_sign(
        method=method,
        path=path,
        query=query,
        timestamp=stamp,
        nonce=once,
        body_sha256=digest,
        client_id=client_id,
        key_id=key_id,
    )
    return {
        "X-Client-Id": client_id,
        "X-Key-Id": key_id,
        "X-Timestamp": stamp,
        "X-Nonce": once,
        "X-Content-SHA256": digest,
        "X-Signature": V2_SCHEME + hmac_hex(secret, message),
    }


def webhook_secret_bytes(secret: str) -> bytes:
    """A Standard Webhooks ``whsec_<base64>`` secret decoded; any other string as UTF-8."""
    if secret.startswith("whsec_"):
        return base64.b64decode(secret.removeprefix("whsec_"))
    return secret.encode()


def standard_webhook_signature(secret: str, *, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` entry of a ``webhook-signature`` header."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(webhook_secret_bytes(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()
