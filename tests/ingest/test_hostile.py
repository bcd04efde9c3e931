"""Hostile input (reliability.md S4): every case is a 4xx JSON answer, never a 500."""

from __future__ import annotations

import orjson
import pytest
from gen_common.signing import sign_lots

from tests.ingest.conftest import KEY, Ingest, lot, request_v1

pytestmark = [pytest.mark.pg, pytest.mark.kafka]

DEEP = b"[" * 100_000 + b"]" * 100_000


def signed_raw(lots_json: bytes) -> bytes:
    """A v1 body whose lots are given as raw JSON text (signed over their parsed value)."""
    lots = orjson.loads(lots_json)
    return b'{"signature":"%s","version":"1.0.0","languages":["en"],"lots":%s}' % (
        sign_lots(KEY.encode(), lots).encode(),
        lots_json,
    )


@pytest.mark.parametrize(
    ("raw", "status", "error"),
    [
        (b"{not json", 400, "Invalid JSON body"),
        (b"", 400, "Invalid JSON body"),
        (b"null", 400, "Request body must be a JSON object"),
        (DEEP, 400, "Invalid JSON body"),
        (b'{"lots": ' + DEEP + b"}", 400, "Invalid JSON body"),
        (
            b'{"signature": NaN, "version": "1.0.0", "languages": ["en"], "lots": [1]}',
            400,
            "Invalid JSON body",
        ),
        (b'{"signature": Infinity}', 400, "Invalid JSON body"),
        (b'{"signature": 1e999999}', 400, "Invalid JSON body"),
        (b'{"signature": ' + b"9" * 1_000_000 + b"}", 400, "Invalid JSON body"),
        (b'{"signature": "\xff\xfe"}', 400, "Invalid JSON body"),
        (b'{"signature": "\xed\xa0\x80"}', 400, "Invalid JSON body"),
        (b"\xef\xbb\xbf{}", 400, "Invalid JSON body"),
        (
            b'{"signature": "' + b"a" * 10_000_000 + b'", "version": "1.0.0", "languages": ["en"],'
            b' "lots": [1]}',
            403,
            "Invalid signature",
        ),
    ],
    ids=[
        "invalid",
        "empty",
        "null",
        "deep-100000",
        "deep-lots",
        "nan",
        "infinity",
        "1e999999",
        "million-digit-int",
        "invalid-utf8",
        "surrogate",
        "bom",
        "10mb-signature",
    ],
)
async def test_hostile_bodies_are_4xx(ingest: Ingest, raw: bytes, status: int, error: str) -> None:
    response = await ingest.v1(None, raw=raw)
    assert response.status_code == status
    assert response.json() == {"error": error}


async def test_nesting_below_the_parser_limit_but_too_deep_to_sign(ingest: Ingest) -> None:
    depth = 1000  # orjson parses up to 1024 levels; json.dumps (signing) recurses deeper
    nested = b"[" * depth + b"]" * depth
    body = b'{"signature":"x","version":"1.0.0","languages":["en"],"lots":%s}' % nested
    response = await ingest.v1(None, raw=body)
    assert response.status_code == 400
    assert response.json() == {"error": "Request JSON nested too deeply"}


async def test_a_10mb_string_in_a_signed_lot_is_400(ingest: Ingest) -> None:
    big = lot(0) | {"additional_info": "x" * 10_000_000}
    response = await ingest.v1(request_v1([big]))
    assert response.status_code == 400
    assert response.json() == {"error": "lots[0].additional_info is longer than 100000 characters"}


@pytest.mark.parametrize(
    "lot_id",
    [b"123456789012345678901234567890", b"18446744073709551615", b"1.5", b"true"],
    ids=["30-digits", "u64-max", "float", "bool"],
)
async def test_odd_numbers_as_lot_ids_are_400(ingest: Ingest, lot_id: bytes) -> None:
    raw = signed_raw(b'[{"lot_id": %s, "images": [{"url": "https://img.example/1.jpg"}]}]' % lot_id)
    response = await ingest.v1(None, raw=raw)
    assert response.status_code == 400
    assert "lot_id" in response.json()["error"]


async def test_duplicate_keys_take_the_last_value_like_python(ingest: Ingest) -> None:
    lots = [lot(0), lot(1)]
    raw = (
        b'{"version": "0.9", "lots": %s, "languages": ["en"], "signature": "%s", '
        b'"version": "1.0.0"}' % (orjson.dumps(lots), sign_lots(KEY.encode(), lots).encode())
    )
    response = await ingest.v1(None, raw=raw)
    assert response.status_code == 201


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"null",
        DEEP,
        b'{"lots": NaN}',
        b'{"lots": "\xff"}',
        b"[]",
        b'{"lots": [{"lot_id": 1e400}], "languages": ["en"]}',
    ],
    ids=["invalid", "null", "deep", "nan", "invalid-utf8", "array", "huge-float"],
)
async def test_hostile_v2_bodies_are_4xx(ingest: Ingest, raw: bytes) -> None:
    headers = {"Content-Type": "application/json"} | ingest.signed(raw)
    response = await ingest.client.post("/api/v2/jobs", content=raw, headers=headers)
    assert response.status_code in (400, 422)
    assert set(response.json()) == {"error"}
