"""Large v1 bodies are spooled and parsed incrementally (gen_ingest.stream, issue 4).

``STREAM_ABOVE`` is set to 0 here, so every body takes the spooled path; the contract rows run
on that path too (tests/contract/test_generate_descriptions_streamed.py).
"""

from __future__ import annotations

import tempfile
import tracemalloc
from typing import Any

import orjson
import pytest
from gen_ingest import spool_scan, stream
from gen_ingest.request_body import Rejected
from gen_ingest.settings import IngestOptions
from gen_ingest.spooled import check_spooled

from tests.ingest.conftest import KEY, Ingest, lot, request_v1, submitted
from tests.ingest.test_hostile import DEEP, signed_raw

pytestmark = [pytest.mark.pg, pytest.mark.kafka]


@pytest.fixture(autouse=True)
def _spool_every_body(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream, "STREAM_ABOVE", 0)


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize(
    ("raw", "status", "error"),
    [
        (b"{not json", 400, "Invalid JSON body"),
        (b"", 400, "Invalid JSON body"),
        (b"null", 400, "Request body must be a JSON object"),
        (b"[1, 2]", 400, "Missing required field: signature"),
        (b'"text"', 400, "Missing required field: signature"),
        (b'{"a": 1} trailing', 400, "Invalid JSON body"),
        (DEEP, 400, "Invalid JSON body"),
        (b'{"lots": ' + DEEP + b"}", 400, "Invalid JSON body"),
        (b'{"lots": [[0, ' * 50_000 + b"]]" * 50_000 + b"}", 400, "Invalid JSON body"),
        (
            b'{"other": ' + nested(spool_scan.MAX_DEPTH - 1) + b"}",
            400,
            "Missing required field: signature",
        ),
        (b'{"other": ' + nested(spool_scan.MAX_DEPTH) + b"}", 400, "Invalid JSON body"),
        (b'{"signature": NaN}', 400, "Invalid JSON body"),
        (b'{"signature": Infinity}', 400, "Invalid JSON body"),
        (b'{"signature": 1e999999}', 400, "Invalid JSON body"),
        (b'{"signature": ' + b"9" * 1_000_000 + b"}", 400, "Invalid JSON body"),
        (b'{"lots": [' + b"9" * 5_000 + b"]}", 400, "Invalid JSON body"),
        (b'{"signature": "\xff\xfe"}', 400, "Invalid JSON body"),
        (b"\xef\xbb\xbf{}", 400, "Invalid JSON body"),
        (
            b'{"signature": "' + b"a" * 10_000_000 + b'", "version": "1.0.0", "languages": ["en"],'
            b' "lots": [1]}',
            403,
            "Invalid signature",
        ),
        (
            b'{"signature": {"a": [1]}, "version": "1.0.0", "languages": ["en"], "lots": [1]}',
            403,
            "Invalid signature",
        ),
        (
            b'{"signature": "x", "version": ["1.0.0", {"a": 1}], "languages": [], "lots": []}',
            400,
            "Unsupported version: ['1.0.0', {'a': 1}]",
        ),
    ],
)
async def test_hostile_spooled_bodies_are_4xx(
    ingest: Ingest, raw: bytes, status: int, error: str
) -> None:
    response = await ingest.v1(None, raw=raw)
    assert response.status_code == status
    assert response.json() == {"error": error}


@pytest.mark.parametrize(
    ("languages", "error"),
    [
        (["en"] * 51, "Too many languages: 51 > 50"),
        (["en"] * 5000, "Too many languages: 5000 > 50"),
        (["en", ["ru"]], "languages must be language codes (strings of 1-35 characters)"),
        (["en", {"ru": 1}], "languages must be language codes (strings of 1-35 characters)"),
        ({"en": ["x"]}, "languages must be a non-empty array"),
    ],
)
async def test_languages_checked_like_the_in_memory_path(
    ingest: Ingest, languages: Any, error: str
) -> None:
    body = request_v1([lot(0), lot(1)]) | {"languages": languages}
    response = await ingest.v1(body)
    assert response.status_code == 400
    assert response.json() == {"error": error}


async def test_a_spooled_batch_is_published_in_order_with_every_field(ingest: Ingest) -> None:
    lots = [lot(n, images=3) | {"webhook": f"https://hooks.example/{n}"} for n in range(5)]
    lots[2]["lot_id"] = 77  # an integer lot id keeps its type
    lots[3]["images"].append({"note": "no url"})  # dropped like the original
    response = await ingest.v1(request_v1(lots, ["en", "de"], webhook_url="https://j.example/"))
    assert response.status_code == 201, response.text
    events = sorted(await submitted(ingest.kafka, 5), key=lambda e: e.lot_seq)
    assert [e.lot_id for e in events] == ["L-0", "L-1", 77, "L-3", "L-4"]
    assert [e.images for e in events] == [
        [i["url"] for i in x["images"] if "url" in i] for x in lots
    ]
    assert [e.additional_info for e in events] == [x["additional_info"] for x in lots]
    assert [e.webhook for e in events] == [x["webhook"] for x in lots]
    assert {(e.total_lots, tuple(e.languages), e.job_webhook_url) for e in events} == {
        (5, ("en", "de"), "https://j.example/")
    }


async def test_the_lots_key_twice_takes_the_last_one(ingest: Ingest) -> None:
    first, last = [lot(0), lot(1)], [lot(2), lot(3), lot(4)]
    raw = b'{"signature":"%s","version":"1.0.0","languages":["en"],"lots":%s,"lots":%s}' % (
        request_v1(last)["signature"].encode(),
        orjson.dumps(first),
        orjson.dumps(last),
    )
    response = await ingest.v1(None, raw=raw)
    assert response.status_code == 201, response.text
    assert response.json()["lots_count"] == 3


async def test_a_top_level_key_named_lots_item_is_not_taken_for_a_lot(ingest: Ingest) -> None:
    body = request_v1([lot(0), lot(1)]) | {"lots.item": {"lot_id": "intruder"}}
    response = await ingest.v1(body)
    assert response.status_code == 201, response.text
    assert response.json()["lots_count"] == 2
    assert {e.lot_id for e in await submitted(ingest.kafka, 2)} == {"L-0", "L-1"}


async def test_floats_are_signed_in_python_repr(ingest: Ingest) -> None:
    lots = b'[{"lot_id": "F", "images": [{"url": "https://i.e/1.jpg"}], "x": 1.10}, {"lot_id": 2}]'
    response = await ingest.v1(None, raw=signed_raw(lots))
    assert response.status_code == 201, response.text


def test_checking_a_large_body_holds_one_lot_at_a_time() -> None:
    lots = [
        {
            "lot_id": f"lot-{n}",
            "additional_info": "2019 sedan, front collision",
            "images": [{"url": f"https://img.example/{n}/{i}.jpg"} for i in range(20)],
        }
        for n in range(3000)
    ]
    body = orjson.dumps(request_v1(lots))
    opts = IngestOptions(shared_key=KEY)
    with tempfile.TemporaryFile() as spooled, tempfile.TemporaryFile() as out:
        spooled.write(body)
        tracemalloc.start()
        try:
            request = check_spooled(spooled, out, KEY.encode(), opts)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert len(request.lots) == 3000
        assert [x.lot_id for x in request.lots][-1] == "lot-2999"
    assert len(body) > 2_500_000
    assert peak < 1_000_000, peak


def test_a_wrong_signature_is_403_before_the_lot_checks() -> None:
    body = orjson.dumps(request_v1([{"lot_id": None}, 3]) | {"signature": "0" * 64})
    with tempfile.TemporaryFile() as spooled, tempfile.TemporaryFile() as out:
        spooled.write(body)
        with pytest.raises(Rejected) as caught:
            check_spooled(spooled, out, KEY.encode(), IngestOptions(shared_key=KEY))
    assert (caught.value.status, caught.value.body) == (403, {"error": "Invalid signature"})
