"""Verify a webhook the Generation Service delivered (contract Decision 9).

Every delivery carries ``X-Signature`` (hex HMAC over the exact body bytes) and the Standard
Webhooks headers (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``: space-separated
``v1,<base64>`` entries, one per active secret); a W2 lots payload also carries a body
``signature`` over its ``lots`` (contract §2.1 serialisation). :func:`verify_webhook` checks every
signature that is present, requires at least one header signature, and refuses a Standard
Webhooks timestamp outside the tolerance (replays).
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from gen_client.signing import (
    hmac_hex,
    same_hex,
    sign_lots,
    standard_webhook_signature,
    webhook_secret_bytes,
)

DEFAULT_TOLERANCE_S = 300


class WebhookVerificationError(ValueError):
    """The delivery does not verify; the message says which check failed."""


def _secret_list(secret: str | Sequence[str]) -> list[str]:
    found = [secret] if isinstance(secret, str) else list(secret)
    if not found or any(not s for s in found):
        raise ValueError("a webhook secret must be a non-empty string")
    return found


def _check_x_signature(body: bytes, presented: str, secrets: list[str]) -> None:
    for secret in secrets:
        if same_hex(hmac_hex(webhook_secret_bytes(secret), body), presented):
            return
    raise WebhookVerificationError("X-Signature does not match the body")


def _check_standard(
    body: bytes, h: Mapping[str, str], secrets: list[str], tolerance_s: int, now: float
) -> None:
    msg_id, stamp, signature = (
        h.get("webhook-id"),
        h.get("webhook-timestamp"),
        h.get("webhook-signature"),
    )
    if not msg_id or not stamp or not signature:
        raise WebhookVerificationError("incomplete Standard Webhooks headers")
    if not stamp.isascii() or not stamp.isdigit():
        raise WebhookVerificationError("malformed webhook-timestamp")
    timestamp = int(stamp)
    if abs(now - timestamp) > tolerance_s:
        raise WebhookVerificationError("webhook-timestamp outside the tolerance")
    presented = {entry for entry in signature.split(" ") if entry.startswith("v1,")}
    for secret in secrets:
        expected = standard_webhook_signature(secret, msg_id=msg_id, timestamp=timestamp, body=body)
        if any(_same(expected, entry) for entry in presented):
            return
    raise WebhookVerificationError("no webhook-signature entry matches")


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def verify_webhook(
    body: bytes,
    headers: Mapping[str, str],
    secret: str | Sequence[str],
    *,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> Any:
    """Check a delivery's signatures and return its parsed JSON body.

    ``secret``: the endpoint's secret (``whsec_...``) or the shared v1 key; several secrets may
    be given during a rotation. Raises :class:`WebhookVerificationError` on any mismatch.
    """
    secrets = _secret_list(secret)
    h = {name.lower(): value for name, value in headers.items()}
    has_x = "x-signature" in h
    has_standard = any(name.startswith("webhook-") for name in h)
    if not has_x and not has_standard:
        raise WebhookVerificationError("no signature headers")
    if has_x:
        _check_x_signature(body, h["x-signature"], secrets)
    if has_standard:
        current = time.time() if now is None else now
        _check_standard(body, h, secrets, tolerance_s, current)
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WebhookVerificationError("body is not JSON") from exc
    signed_lots = isinstance(payload, dict) and "signature" in payload and "lots" in payload
    if signed_lots and not any(
        same_hex(sign_lots(webhook_secret_bytes(s), payload["lots"]), payload["signature"])
        for s in secrets
    ):
        raise WebhookVerificationError("body signature does not match the lots")
    return payload
