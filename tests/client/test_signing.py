"""The client's standalone HMAC helpers: the contract's vectors (§2.4) and agreement with the
server's gen_common.signing / gen_common.request_auth on the same inputs."""

from __future__ import annotations

import pytest
from gen_client import signing
from gen_common import request_auth
from gen_common import signing as server
from hypothesis import given
from hypothesis import strategies as st

KEY = b"test-key"
DEV = b"dev-secret-key-for-testing-2024"
JOB = "11111111-2222-3333-4444-555555555555"
E1 = [{"lot_id": "A1", "images": [{"url": "https://e.x/1.jpg"}]}]
E2 = [{"lot_id": "A1", "images": [{"url": "https://e.x/1.jpg"}], "additional_info": "Ø"}]
W2 = [{"descriptions": [{"damages": "<p>Dent.</p>", "language": "en"}], "lot_id": "A1"}]
DEMO = [
    {
        "lot_id": "demo-car-12345",
        "additional_info": "2021 BMW X5, front collision damage, airbags deployed",
        "images": [
            {
                "url": "https://auto.dev/images/forsale/2025/08/02/11/20/"
                "2019_tesla_model_3-pic-5280294760125443694-1024x768.jpeg"
            },
            {
                "url": "https://auto.dev/images/forsale/2025/08/02/11/20/"
                "2019_tesla_model_3-pic-8256033307301130576-1024x768.jpeg"
            },
        ],
    }
]
W1 = {
    "completed_lots": 2,
    "failed_lots": 0,
    "job_id": JOB,
    "result_url": f"/api/v1/batch-results/{JOB}",
    "status": "completed",
    "timestamp": "2025-08-06T11:30:00",
    "total_lots": 2,
}

LOT_VECTORS = [
    (KEY, E1, "b9f39dc1c88b7eacb7d1edf2b161754aeb797e69ba01549c6ba0d35bb3505570"),
    (KEY, E2, "858b7d96135432b3739a81b3fe91364ff5b93985508db35aca7cf1ff8c2f7e99"),
    (KEY, W2, "cfd7cce863afe3f7e1b11c9b85435ef294d5a6434e9a2d0f839cbc0610a365b3"),
    (KEY, W1, "4c6b401f3f7e8cbad29fedd080acbb8aef9990c69c2d6ceddfed495734d61414"),
    (DEV, DEMO, "d95badb38ba7e8dd74a47e5d0199da73e88f5e249ffaf87f46dde90e3ab7e743"),
]
RAW_VECTORS = [
    (KEY, b"", "2711cc23e9ab1b8a9bc0fe991238da92671624a9ebdaf1c1abec06e7e9a14f9b"),
    (KEY, b"{}", "cebaba593292593b9c411e62ce0d4992e1622a16828737d2af1077fca5333735"),
    (
        KEY,
        b'{"job_id":"%s"}' % JOB.encode(),
        "d96c5e8f89eb28849798cb6b8488c4af258b6895c273afb298bb7907dafe1ad3",
    ),
    (KEY, JOB.encode(), "4598c08301b75371649fd7efd30609287b4e4ef1fc6cf00644e02df59e497af1"),
    (DEV, b"", "31372e0cc162d8177cd01417440ae6ed9e8c74894765825b64d335070b80c426"),
]


@pytest.mark.parametrize(
    ("key", "value", "expected"), LOT_VECTORS, ids=["E1", "E2", "W2", "W1", "dev"]
)
def test_lots_signature_matches_contract_and_server(
    key: bytes, value: object, expected: str
) -> None:
    assert signing.sign_lots(key, value) == expected
    assert server.sign_lots(key, value) == expected


@pytest.mark.parametrize(
    ("key", "message", "expected"), RAW_VECTORS, ids=["H0", "H1", "H2", "D1", "dev"]
)
def test_raw_signature_matches_contract_and_server(
    key: bytes, message: bytes, expected: str
) -> None:
    assert signing.hmac_hex(key, message) == expected
    assert server.hmac_hex(key, message) == expected


def test_utf8_serialisation_is_the_wrong_one() -> None:
    """E2-wrong: a raw UTF-8 Ø is not what is signed (ensure_ascii escapes it)."""
    assert signing.canonical_json(E2) == (
        b'[{"additional_info":"\\u00d8","images":[{"url":"https://e.x/1.jpg"}],"lot_id":"A1"}]'
    )
    assert signing.sign_lots(KEY, E2) != (
        "3aa3c9640bd17e668a77affbc6875517f537281e8dc096fa1c0c9070e989b707"
    )


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(JSON)
def test_canonical_json_agrees_with_server(value: object) -> None:
    assert signing.canonical_json(value) == server.canonical_json(value)


@given(st.text(max_size=60), st.binary(max_size=60))
def test_matching_rules_agree_with_server(presented: str, key: bytes) -> None:
    expected = signing.hmac_hex(key, b"x")
    for candidate in (presented, expected, expected.upper(), "sha256=" + expected, " " + expected):
        assert signing.same_hex(expected, candidate) == server.matches_hex(expected, candidate)


@given(st.text(alphabet="abc=&%+ é/", max_size=30))
def test_canonical_query_agrees_with_server(query: str) -> None:
    assert signing.canonical_query(query) == server.canonical_query(query)


def test_v2_headers_verify_with_the_server_rules() -> None:
    secret = b"\x01" * 32
    body = b'{"lots":[]}'
    headers = signing.v2_headers(
        secret,
        client_id="acme",
        key_id="k1",
        method="post",
        path="/api/v2/jobs",
        query="b=2&a=1",
        body=body,
        timestamp=1_700_000_000,
        nonce="n" * 22,
    )
    assert headers == request_auth.sign(
        secret,
        client_id="acme",
        key_id="k1",
        method="post",
        path="/api/v2/jobs",
        query="b=2&a=1",
        body=body,
        timestamp=1_700_000_000,
        nonce="n" * 22,
    )
    parsed = request_auth.parse_headers({k.lower(): v for k, v in headers.items()})
    message = request_auth.string_to_sign(
        parsed, method="POST", path="/api/v2/jobs", query="a=1&b=2"
    )
    assert server.hmac_hex(secret, message) == parsed.signature


def test_v2_nonce_is_fresh_and_parseable() -> None:
    one = signing.v2_headers(b"k", client_id="c", key_id="k", method="GET", path="/x")
    two = signing.v2_headers(b"k", client_id="c", key_id="k", method="GET", path="/x")
    assert one["X-Nonce"] != two["X-Nonce"]
    request_auth.parse_headers({k.lower(): v for k, v in one.items()})


@pytest.mark.parametrize("secret", ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "plain-shared-key"])
def test_standard_webhook_signature_agrees_with_server(secret: str) -> None:
    ours = signing.standard_webhook_signature(
        secret, msg_id="msg_1", timestamp=1_700_000_000, body=b"{}"
    )
    theirs = server.standard_webhook_signature(
        secret, msg_id="msg_1", timestamp=1_700_000_000, body=b"{}"
    )
    assert ours == theirs
