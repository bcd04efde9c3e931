"""The contract's worked HMAC vectors (api-v1-contract.md §2.4) and the accepted forms."""

import time

import pytest
from gen_common import signing
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

KEY = b"test-key"
JOB = "11111111-2222-3333-4444-555555555555"


@pytest.mark.parametrize(
    ("lots", "expected"),
    [
        (
            [{"lot_id": "A1", "images": [{"url": "https://e.x/1.jpg"}]}],
            "b9f39dc1c88b7eacb7d1edf2b161754aeb797e69ba01549c6ba0d35bb3505570",
        ),
        (
            [{"lot_id": "A1", "images": [{"url": "https://e.x/1.jpg"}], "additional_info": "Ø"}],
            "858b7d96135432b3739a81b3fe91364ff5b93985508db35aca7cf1ff8c2f7e99",
        ),
        (
            [{"descriptions": [{"damages": "<p>Dent.</p>", "language": "en"}], "lot_id": "A1"}],
            "cfd7cce863afe3f7e1b11c9b85435ef294d5a6434e9a2d0f839cbc0610a365b3",
        ),
    ],
    ids=["E1", "E2", "W2"],
)
def test_lots_signature_matches_the_contract_vectors(lots: object, expected: str) -> None:
    assert signing.sign_lots(KEY, lots) == expected


def test_utf8_serialisation_is_not_what_is_signed() -> None:
    raw = '[{"additional_info":"Ø","images":[{"url":"https://e.x/1.jpg"}],"lot_id":"A1"}]'
    wrong = signing.hmac_hex(KEY, raw.encode())
    assert wrong == "3aa3c9640bd17e668a77affbc6875517f537281e8dc096fa1c0c9070e989b707"
    lots = [{"lot_id": "A1", "images": [{"url": "https://e.x/1.jpg"}], "additional_info": "Ø"}]
    assert signing.sign_lots(KEY, lots) != wrong


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (b"", "2711cc23e9ab1b8a9bc0fe991238da92671624a9ebdaf1c1abec06e7e9a14f9b"),
        (b"{}", "cebaba593292593b9c411e62ce0d4992e1622a16828737d2af1077fca5333735"),
        (
            b'{"job_id":"%s"}' % JOB.encode(),
            "d96c5e8f89eb28849798cb6b8488c4af258b6895c273afb298bb7907dafe1ad3",
        ),
        (JOB.encode(), "4598c08301b75371649fd7efd30609287b4e4ef1fc6cf00644e02df59e497af1"),
    ],
    ids=["H0", "H1", "H2", "D1"],
)
def test_raw_signatures_match_the_contract_vectors(message: bytes, expected: str) -> None:
    assert signing.hmac_hex(KEY, message) == expected


def test_dev_key_vectors() -> None:
    dev = b"dev-secret-key-for-testing-2024"
    assert signing.hmac_hex(dev, b"") == (
        "31372e0cc162d8177cd01417440ae6ed9e8c74894765825b64d335070b80c426"
    )
    lots = [
        {
            "additional_info": "2021 BMW X5, front collision damage, airbags deployed",
            "images": [
                {
                    "url": "https://auto.dev/images/forsale/2025/08/02/11/20/2019_tesla_model_3-pic-5280294760125443694-1024x768.jpeg"
                },
                {
                    "url": "https://auto.dev/images/forsale/2025/08/02/11/20/2019_tesla_model_3-pic-8256033307301130576-1024x768.jpeg"
                },
            ],
            "lot_id": "demo-car-12345",
        }
    ]
    assert signing.sign_lots(dev, lots) == (
        "d95badb38ba7e8dd74a47e5d0199da73e88f5e249ffaf87f46dde90e3ab7e743"
    )


@pytest.mark.parametrize(
    ("presented", "ok"),
    [
        ("b9f39dc1c88b7eacb7d1edf2b161754aeb797e69ba01549c6ba0d35bb3505570", True),
        ("sha256=b9f39dc1c88b7eacb7d1edf2b161754aeb797e69ba01549c6ba0d35bb3505570", True),
        ("B9F39DC1C88B7EACB7D1EDF2B161754AEB797E69BA01549C6BA0D35BB3505570", True),
        ("SHA256=b9f39dc1c88b7eacb7d1edf2b161754aeb797e69ba01549c6ba0d35bb3505570", True),
        ("b9f39dc1c88b7eacb7d1edf2b161754aeb797e69ba01549c6ba0d35bb350557", False),
        ("ß9f39dc1c88b7eacb7d1edf2b161754aeb797e69ba01549c6ba0d35bb3505570", False),
        (12345, False),
        (None, False),
    ],
)
def test_accepted_signature_forms(presented: object, ok: bool) -> None:
    expected = "b9f39dc1c88b7eacb7d1edf2b161754aeb797e69ba01549c6ba0d35bb3505570"
    assert signing.matches_hex(expected, presented) is ok


def test_v2_string_changes_with_every_field() -> None:
    base = {
        "method": "POST",
        "path": "/api/v2/jobs",
        "query": "b=2&a=1",
        "timestamp": "1700000000",
        "nonce": "n1",
        "body_sha256": signing.body_sha256(b"{}"),
        "client_id": "c",
        "key_id": "k",
    }
    reference = signing.v2_string_to_sign(**base)
    assert b"a=1&b=2" in reference
    for field in base:
        changed = dict(base, **{field: base[field] + "x"})
        assert signing.v2_string_to_sign(**changed) != reference, field


def test_standard_webhook_signature_verifies_with_the_reference_library() -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"type":"lot.completed"}'
    now = int(time.time())
    header = signing.standard_webhook_signature(secret, msg_id="msg_1", timestamp=now, body=body)
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(now), "webhook-signature": header}
    assert Webhook(secret).verify(body, headers) == {"type": "lot.completed"}
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body + b" ", headers)
