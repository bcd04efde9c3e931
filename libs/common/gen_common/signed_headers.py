"""What a signed API v2 request carries (both sides of :mod:`gen_common.request_auth`): the six
headers, their strict parsing, the string to sign, and :func:`sign` for clients."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass

from gen_common.api_keys import ID
from gen_common.errors import BadSignature
from gen_common.signing import body_sha256, hmac_hex, v2_string_to_sign

SCHEME = "v2="
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
        client_id=_one(headers, "x-client-id", ID),
        key_id=_one(headers, "x-key-id", ID),
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
