"""verify_webhook against the notifier's own signing code and the standardwebhooks library, and
every kind of tampering."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from gen_client import WebhookVerificationError, verify_webhook
from gen_notifier import payloads
from gen_notifier import signing as notifier_signing
from standardwebhooks.webhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError as LibraryError

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SHARED = "dev-secret-key-for-testing-2024"
LOT = {
    "lot_id": "A1",
    "status": "completed",
    "descriptions": [
        {"language": "en", "damages": "<p>Dent.</p>"},
        {"language": "ru", "damages": "Вмятина"},
    ],
    "missing_images": [],
    "pending_languages": [],
    "warnings": [],
}


def delivery(
    secret: str, *, stamp: int | None = None, secrets: list[str] | None = None
) -> tuple[bytes, dict[str, str]]:
    """A W2 delivery exactly as the notifier builds it (body bytes and headers)."""
    body = payloads.lots_body(notifier_signing.signing_key(secret, SHARED), [LOT])
    headers = notifier_signing.headers(
        msg_id="msg_1",
        timestamp=int(time.time()) if stamp is None else stamp,
        body=body,
        secrets=secrets or [secret],
    )
    return body, headers


@pytest.mark.parametrize("secret", [SECRET, SHARED])
def test_a_notifier_delivery_verifies(secret: str) -> None:
    body, headers = delivery(secret)
    payload = verify_webhook(body, headers, secret)
    assert payload["lots"][0]["descriptions"][1]["damages"] == "Вмятина"
    assert payload["signature"] == json.loads(body)["signature"]


def test_the_standardwebhooks_library_agrees_both_ways() -> None:
    body = json.dumps({"type": "job.completed", "data": {"job_id": "j"}}).encode()
    now = datetime.now(UTC)
    msg_id = "msg_lib"
    library = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(SECRET).sign(msg_id, now, body.decode()),
    }
    assert verify_webhook(body, library, SECRET) == {
        "type": "job.completed",
        "data": {"job_id": "j"},
    }
    body2, ours = delivery(SECRET)
    assert Webhook(SECRET).verify(
        body2, {k: v for k, v in ours.items() if k.startswith("webhook-")}
    )
    with pytest.raises(WebhookVerificationError):
        verify_webhook(body, library, "whsec_" + "QUJD" * 8)
    with pytest.raises(LibraryError):
        Webhook("whsec_" + "QUJD" * 8).verify(body2, ours)


Tamper = Callable[[bytes, dict[str, str]], tuple[bytes, dict[str, str]]]


def tamper_body(body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    return body.replace(b"Dent.", b"Dent!"), headers


def tamper_x_signature(body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    return body, headers | {"x-signature": "0" * 64}


def tamper_standard(body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    return body, headers | {"webhook-id": "msg_2"}


def tamper_lots_signature(body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    """Re-sign the headers over a body whose lots no longer match its ``signature``."""
    data = json.loads(body)
    data["lots"][0]["status"] = "failed"
    forged = json.dumps(data).encode()
    return forged, notifier_signing.headers(
        msg_id="msg_1", timestamp=int(time.time()), body=forged, secrets=[SECRET]
    )


def drop_signatures(body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    return body, {
        k: v
        for k, v in headers.items()
        if k not in ("x-signature",) and not k.startswith("webhook-")
    }


def incomplete_standard(body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    return body, {k: v for k, v in headers.items() if k != "webhook-signature"}


@pytest.mark.parametrize(
    "tamper",
    [
        tamper_body,
        tamper_x_signature,
        tamper_standard,
        tamper_lots_signature,
        drop_signatures,
        incomplete_standard,
    ],
)
def test_tampering_is_refused(tamper: Tamper) -> None:
    body, headers = tamper(*delivery(SECRET))
    with pytest.raises(WebhookVerificationError):
        verify_webhook(body, headers, SECRET)


@pytest.mark.parametrize("age", [-301, 301, 3600])
def test_timestamp_outside_the_tolerance_is_refused(age: int) -> None:
    now = time.time()
    body, headers = delivery(SECRET, stamp=int(now) - age)
    with pytest.raises(WebhookVerificationError, match="tolerance"):
        verify_webhook(body, headers, SECRET, now=now)
    assert verify_webhook(body, headers, SECRET, now=now, tolerance_s=abs(age) + 1)


def test_rotation_old_and_new_secret_both_verify() -> None:
    old = "whsec_" + "b2xkb2xkb2xkb2xkb2xk"
    body, headers = delivery(SECRET, secrets=[SECRET, old])
    assert verify_webhook(body, headers, SECRET)
    # A receiver still on the old secret: X-Signature is over the new one only.
    with pytest.raises(WebhookVerificationError, match="X-Signature"):
        verify_webhook(body, headers, old)
    without_x = {k: v for k, v in headers.items() if k != "x-signature"}
    with pytest.raises(WebhookVerificationError, match="body signature"):
        verify_webhook(body, without_x, old)
    assert verify_webhook(body, without_x, [old, SECRET])


def test_headers_are_case_insensitive_and_a_prefixed_hex_is_accepted() -> None:
    body, headers = delivery(SHARED)
    shouted = {k.upper(): v for k, v in headers.items()}
    shouted["X-SIGNATURE"] = "sha256=" + headers["x-signature"].upper()
    assert verify_webhook(body, shouted, SHARED)
