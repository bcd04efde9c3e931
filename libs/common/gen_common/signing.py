"""HMAC-SHA256 signing shared by ingest (verifies) and the notifier (signs).

Three schemes, all constant-time on comparison:

- **v1 body signature** (api-v1-contract.md §2.1): hex HMAC over the parsed ``lots``, serialised
  the way Python's ``json.dumps(lots, separators=(",", ":"), sort_keys=True)`` does (ASCII
  escaping, Python float repr). Webhook bodies carry the same ``signature`` over ``lots``.
- **Raw-bytes signature**: hex HMAC over exact bytes (``X-Signature`` on requests and webhooks).
- **v2 request signature**: HMAC over a canonical request string (method, path, canonical query,
  timestamp, nonce, body SHA-256, client id, key id), see :func:`v2_string_to_sign`.
- **Standard Webhooks**: ``v1,<base64 HMAC(id.timestamp.body)>`` with a ``whsec_`` secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from urllib.parse import parse_qsl, quote

SHA256_PREFIX = "sha256="


def canonical_json(value: object) -> bytes:
    """Python-compatible canonical JSON: sorted keys, compact, ASCII-escaped."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def hmac_hex(secret: bytes, message: bytes) -> str:
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def matches_hex(expected_hex: str, presented: object) -> bool:
    """Does ``presented`` carry ``expected_hex``? Accepts a ``sha256=`` prefix and upper case."""
    if not isinstance(presented, str):
        return False
    value = presented.strip()
    if value[: len(SHA256_PREFIX)].lower() == SHA256_PREFIX:
        value = value[len(SHA256_PREFIX) :]
    if len(value) != len(expected_hex) or not value.isascii():
        return False
    return hmac.compare_digest(value.lower().encode(), expected_hex.encode())


def sign_lots(secret: bytes, lots: object) -> str:
    return hmac_hex(secret, canonical_json(lots))


def canonical_query(query: str) -> str:
    """Sorted, RFC 3986-encoded query string; blank values kept."""
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
    """The v2 canonical request: one field per line, so no field can forge another."""
    return "\n".join(
        [
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
    ).encode()


def body_sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def webhook_secret_bytes(secret: str) -> bytes:
    """Decode a Standard Webhooks ``whsec_<base64>`` secret; other strings are used as UTF-8."""
    if secret.startswith("whsec_"):
        return base64.b64decode(secret.removeprefix("whsec_"))
    return secret.encode()


def standard_webhook_signature(secret: str, *, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` entry of the ``webhook-signature`` header."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(webhook_secret_bytes(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()
