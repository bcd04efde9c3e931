"""api-v1-contract.md §1.1: one test per row of the validation-order, sync and batch tables,
with the Decisions applied (invalid JSON and null are 400, wrong types 4xx, never 500)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from gen_common.events import Description, LotFailed, LotSubmitted, LotTranslated
from gen_common.signing import sign_lots

from tests.ingest.conftest import KEY, Ingest, MakeIngest, Pipeline, lot, request_v1, submitted

pytestmark = [pytest.mark.pg, pytest.mark.kafka]


def english(event: LotSubmitted) -> LotTranslated:
    return LotTranslated(
        job_id=event.job_id,
        lot_seq=event.lot_seq,
        lot_id=event.lot_id,
        descriptions=[Description(language="en", damages="<p>ok</p>")],
    )


async def expect(response: Any, status: int, body: dict[str, Any]) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == body


# --- validation order (§1.1 table, steps a-i) ---------------------------------------------


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
async def test_a_content_type_not_json(ingest: Ingest, content_type: str) -> None:
    response = await ingest.client.post(
        "/api/v1/generate-descriptions", content=b"{}", headers={"Content-Type": content_type}
    )
    await expect(response, 400, {"error": "Content-Type must be application/json"})


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=latin-1", "application/vnd.api+json"]
)
async def test_a_json_content_types_pass(ingest: Ingest, content_type: str) -> None:
    response = await ingest.client.post(
        "/api/v1/generate-descriptions", content=b"{}", headers={"Content-Type": content_type}
    )
    await expect(response, 400, {"error": "Missing required field: signature"})


async def test_b_unparseable_json_is_400(ingest: Ingest) -> None:
    await expect(await ingest.v1(None, raw=b'{"lots": [}'), 400, {"error": "Invalid JSON body"})


async def test_b2_json_null_is_400(ingest: Ingest) -> None:
    await expect(
        await ingest.v1(None, raw=b"null"), 400, {"error": "Request body must be a JSON object"}
    )


@pytest.mark.parametrize("missing", ["signature", "version", "languages", "lots"])
async def test_c_first_missing_field_is_reported(ingest: Ingest, missing: str) -> None:
    body = request_v1([lot(0)])
    fields = ["signature", "version", "languages", "lots"]
    for name in fields[fields.index(missing) :]:
        del body[name]
    await expect(await ingest.v1(body), 400, {"error": f"Missing required field: {missing}"})


async def test_c_array_body_lands_on_missing_signature(ingest: Ingest) -> None:
    await expect(await ingest.v1([1, 2]), 400, {"error": "Missing required field: signature"})


@pytest.mark.parametrize(("version", "shown"), [("1.0", "1.0"), ("2.0.0", "2.0.0"), (1, "1")])
async def test_d_unsupported_version(ingest: Ingest, version: object, shown: str) -> None:
    body = request_v1([lot(0)]) | {"version": version, "signature": "bad"}
    await expect(await ingest.v1(body), 400, {"error": f"Unsupported version: {shown}"})


@pytest.mark.parametrize("signature", ["0" * 64, 12345, None, "", "sha256=" + "0" * 64])
async def test_e_signature_mismatch_is_403_before_structure_checks(
    ingest: Ingest, signature: object
) -> None:
    body = {"signature": signature, "version": "1.0.0", "languages": "en", "lots": "x"}
    await expect(await ingest.v1(body), 403, {"error": "Invalid signature"})


async def test_e_wrong_key_is_403(ingest: Ingest) -> None:
    lots = [lot(0)]
    body = request_v1(lots) | {"signature": sign_lots(b"other-key", lots)}
    await expect(await ingest.v1(body), 403, {"error": "Invalid signature"})


@pytest.mark.parametrize("lots", [[], {"a": 1}, "lots", 3])
async def test_f_lots_not_a_non_empty_array(ingest: Ingest, lots: object) -> None:
    body = {
        "signature": sign_lots(KEY.encode(), lots),
        "version": "1.0.0",
        "languages": ["en"],
        "lots": lots,
    }
    await expect(await ingest.v1(body), 400, {"error": "lots must be a non-empty array"})


@pytest.mark.parametrize("languages", [[], "en", None, {"en": 1}])
async def test_g_languages_not_a_non_empty_array(ingest: Ingest, languages: object) -> None:
    body = request_v1([lot(0)]) | {"languages": languages}
    await expect(await ingest.v1(body), 400, {"error": "languages must be a non-empty array"})


async def test_h_one_lot_is_sync(ingest: Ingest, pipeline: Pipeline) -> None:
    pipeline.answer = english
    response = await ingest.v1(request_v1([lot(0)], ["en"]))
    assert response.status_code == 200
    assert [e.mode for e in pipeline.seen] == ["sync"]


async def test_i_two_lots_are_batch(ingest: Ingest) -> None:
    response = await ingest.v1(request_v1([lot(0), lot(1)]))
    assert response.status_code == 201
    assert response.json()["lots_count"] == 2


# --- sync table (§1.1.1) -------------------------------------------------------------------


@pytest.mark.parametrize("lot_id", ["", 0, None, "absent"])
async def test_sync_lot_id_missing_or_falsy(ingest: Ingest, lot_id: object) -> None:
    one = lot(0)
    if lot_id == "absent":
        del one["lot_id"]
    else:
        one["lot_id"] = lot_id
    await expect(await ingest.v1(request_v1([one])), 400, {"error": "lot_id is required"})


@pytest.mark.parametrize("images", [[], None, "absent"])
async def test_sync_images_missing_or_empty(ingest: Ingest, images: object) -> None:
    one = lot(0)
    if images == "absent":
        del one["images"]
    else:
        one["images"] = images
    await expect(await ingest.v1(request_v1([one])), 400, {"error": "images array cannot be empty"})


async def test_sync_more_than_20_images(ingest: Ingest) -> None:
    one = lot(0, images=21) | {"images": lot(0, images=21)["images"] + [{"no_url": 1}]}
    await expect(
        await ingest.v1(request_v1([one])),
        400,
        {"error": "Too many images for sync mode: 21 > 20"},
    )


async def test_sync_20_images_pass(ingest: Ingest, pipeline: Pipeline) -> None:
    pipeline.answer = english
    response = await ingest.v1(request_v1([lot(0, images=20)], ["en"]))
    assert response.status_code == 200
    assert len(pipeline.seen[0].images) == 20


async def test_sync_image_threshold_failed(ingest: Ingest, pipeline: Pipeline) -> None:
    pipeline.answer = lambda e: LotFailed(
        job_id=e.job_id,
        lot_seq=e.lot_seq,
        lot_id=e.lot_id,
        stage="vision",
        reason="image_unreachable",
        missing_images=e.images,
    )
    one = lot(0)
    await expect(
        await ingest.v1(request_v1([one])),
        400,
        {
            "error": "image_unreachable",
            "message": "Too many unreachable images",
            "missing_images": [i["url"] for i in one["images"]],
        },
    )


async def test_sync_no_entry_with_a_url_is_image_unreachable(ingest: Ingest) -> None:
    one = lot(0) | {"images": [{"href": "x"}, {"src": "y"}]}
    await expect(
        await ingest.v1(request_v1([one])),
        400,
        {
            "error": "image_unreachable",
            "message": "Too many unreachable images",
            "missing_images": [],
        },
    )


async def test_sync_vision_failure_is_500_without_details(
    ingest: Ingest, pipeline: Pipeline
) -> None:
    pipeline.answer = lambda e: LotFailed(
        job_id=e.job_id,
        lot_seq=e.lot_seq,
        lot_id=e.lot_id,
        stage="vision",
        reason="upstream_unavailable",
        message="Connection error.",
    )
    await expect(await ingest.v1(request_v1([lot(0)])), 500, {"error": "Processing failed"})


@pytest.mark.parametrize(
    ("lots", "message"),
    [
        (["not-an-object"], "lots[0] must be an object"),
        (
            [{"lot_id": "A", "images": ["https://img.example/1.jpg"]}],
            "lots[0].images[0] must be an object with a url",
        ),
        ([{"lot_id": "A", "images": [{"url": 5}]}], "lots[0].images[0].url must be a URL string"),
        ([{"lot_id": "A", "images": {"url": "x"}}], "lots[0].images must be an array"),
        (
            [{"lot_id": ["A"], "images": [{"url": "x"}]}],
            "lots[0].lot_id must be a string or an integer",
        ),
        (
            [{"lot_id": "A", "images": [{"url": "x"}], "additional_info": {"a": 1}}],
            "lots[0].additional_info must be a string",
        ),
    ],
)
async def test_sync_wrong_types_are_400(ingest: Ingest, lots: Any, message: str) -> None:
    await expect(await ingest.v1(request_v1(lots)), 400, {"error": message})


async def test_sync_success(ingest: Ingest, pipeline: Pipeline) -> None:
    pipeline.answer = english
    response = await ingest.v1(request_v1([lot(0) | {"lot_id": "11-12345"}], ["en"]))
    assert response.content == (
        b'{"lots":[{"descriptions":[{"damages":"<p>ok</p>","language":"en"}],'
        b'"lot_id":"11-12345"}],"version":"1.0.0"}\n'
    )


# --- batch table (§1.1.2) ------------------------------------------------------------------


async def test_batch_more_than_50000_lots(ingest: Ingest) -> None:
    lots = [{"lot_id": i, "images": []} for i in range(50_001)]
    await expect(await ingest.v1(request_v1(lots)), 400, {"error": "Too many lots: 50001 > 50000"})


async def test_batch_estimated_file_too_large(make_ingest: MakeIngest) -> None:
    ingest = await make_ingest(max_batch_file_bytes=50_000)
    lots = [lot(i, images=20) for i in range(40)]
    response = await ingest.v1(request_v1(lots))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error.startswith("Estimated batch file too large: ")
    assert error.endswith(" > 50000")
    assert float(error.split(": ")[1].split(" > ")[0]) > 50_000


async def test_batch_lot_line_above_1mb(ingest: Ingest) -> None:
    big = lot(1) | {
        "additional_info": "x" * 99_000,
        "images": [{"url": "https://img.example/" + "a" * 4000}] * 100,
    }
    huge = big | {"images": [{"url": "https://img.example/" + "\u0001" * 4000}] * 100}
    response = await ingest.v1(request_v1([lot(0), huge]))
    assert response.status_code == 400
    assert response.json()["error"].startswith("Lot too large: lots[1] ~")
    assert (await ingest.v1(request_v1([lot(0), big]))).status_code == 201


async def test_batch_lot_not_an_object(ingest: Ingest) -> None:
    await expect(
        await ingest.v1(request_v1([lot(0), "x"])), 400, {"error": "lots[1] must be an object"}
    )


async def test_batch_accepted_only_when_durable(ingest: Ingest) -> None:
    response = await ingest.v1(request_v1([lot(0), lot(1)]))
    assert response.status_code == 201
    events = await submitted(ingest.kafka, 2)
    assert {str(e.job_id) for e in events} == {response.json()["job_id"]}


async def test_signature_covers_only_lots_and_ignores_key_order(ingest: Ingest) -> None:
    lots = [lot(0), lot(1)]
    body = request_v1(lots)
    reordered = [dict(reversed(list(item.items()))) for item in lots]
    raw = orjson.dumps(body | {"lots": reordered, "languages": ["de"]}, option=orjson.OPT_INDENT_2)
    assert (await ingest.v1(None, raw=raw)).status_code == 201
