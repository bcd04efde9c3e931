"""Which secrets sign a delivery, and the headers every attempt carries.

An endpoint signs with its own secret when it has one, else with the shared client key (the v1
key clients already hold), so v1 receivers verify ``X-Signature`` and the body ``signature``
with the key they have. After a rotation the old secrets stay *active* until their
``expires_at``: ``webhook-signature`` then carries one ``v1,<base64>`` entry per active secret;
``X-Signature`` (one value) always uses the current secret.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from gen_common.signing import hmac_hex, standard_webhook_signature, webhook_secret_bytes

USER_AGENT = "Generation-Service-Webhook/2.0"


def signing_key(secret: str | None, shared_key: str) -> bytes:
    return webhook_secret_bytes(secret if secret else shared_key)


def active_secrets(
    secret: str | None, old_secrets: Sequence[dict[str, Any]], shared_key: str, now: datetime
) -> list[str]:
    current = secret if secret else shared_key
    older = [
        s["secret"]
        for s in old_secrets
        if datetime.fromisoformat(s["expires_at"]) > now and s["secret"] != current
    ]
    return [current, *older]


def headers(*, msg_id: str, timestamp: int, body: bytes, secrets: Sequence[str]) -> dict[str, str]:
    """Every signature form: X-Signature over the body, and the Standard Webhooks headers."""
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "x-signature": hmac_hex(webhook_secret_bytes(secrets[0]), body),
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(
            standard_webhook_signature(s, msg_id=msg_id, timestamp=timestamp, body=body)
            for s in secrets
        ),
    }
