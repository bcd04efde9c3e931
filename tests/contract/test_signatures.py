"""§2.1 / §2.4 and Decision 1: the route accepts exactly the forms the contract lists."""

from __future__ import annotations

from typing import Any

import pytest
from gen_common.events import Description, LotFailed, LotSubmitted, LotTranslated

from tests.ingest.conftest import Ingest, MakeIngest, Pipeline

pytestmark = [pytest.mark.pg, pytest.mark.kafka]

E1_LOTS = [{"lot_id": "A1", "images": [{"url": "https://e.x/1.jpg"}]}]
E1 = "b9f39dc1c88b7eacb7d1edf2b161754aeb797e69ba01549c6ba0d35bb3505570"
E2_LOTS = [{"lot_id": "A1", "images": [{"url": "https://e.x/1.jpg"}], "additional_info": "Ø"}]
E2 = "858b7d96135432b3739a81b3fe91364ff5b93985508db35aca7cf1ff8c2f7e99"
E2_WRONG = "3aa3c9640bd17e668a77affbc6875517f537281e8dc096fa1c0c9070e989b707"
DEV_KEY = "dev-secret-key-for-testing-2024"
DEV_LOTS = [
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
DEV = "d95badb38ba7e8dd74a47e5d0199da73e88f5e249ffaf87f46dde90e3ab7e743"


def unreachable(event: LotSubmitted) -> LotFailed:
    return LotFailed(
        job_id=event.job_id,
        lot_seq=event.lot_seq,
        lot_id=event.lot_id,
        stage="vision",
        reason="image_unreachable",
        missing_images=event.images,
    )


def body(lots: Any, signature: str) -> dict[str, Any]:
    return {"signature": signature, "version": "1.0.0", "languages": ["en"], "lots": lots}


@pytest.mark.parametrize(
    "signature",
    [E1, E1.upper(), "sha256=" + E1, "SHA256=" + E1.upper()],
    ids=["E1", "upper", "prefix", "prefix-upper"],
)
async def test_e1_forms_pass_the_signature_step(
    ingest: Ingest, pipeline: Pipeline, signature: str
) -> None:
    pipeline.answer = unreachable
    response = await ingest.v1(body(E1_LOTS, signature))
    assert response.status_code == 400
    assert response.json()["error"] == "image_unreachable"


@pytest.mark.parametrize(
    "raw",
    [
        '{"signature":"%s","version":"1.0.0","languages":["en"],"lots":[{"lot_id":"A1",'
        '"images":[{"url":"https://e.x/1.jpg"}],"additional_info":"\\u00d8"}]}',
        '{ "lots" : [ { "additional_info" : "Ø", "lot_id" : "A1", "images" : [ { "url" : '
        '"https:\\/\\/e.x\\/1.jpg" } ] } ], "languages": ["en"], "version": "1.0.0", '
        '"signature": "%s" }',
    ],
    ids=["escaped", "reordered-utf8"],
)
async def test_e2_is_accepted_however_the_json_is_written(
    ingest: Ingest, pipeline: Pipeline, raw: str
) -> None:
    pipeline.answer = unreachable
    response = await ingest.v1(None, raw=(raw % E2).encode())
    assert response.status_code == 400
    assert response.json()["missing_images"] == ["https://e.x/1.jpg"]


async def test_e2_signed_over_utf8_is_403(ingest: Ingest) -> None:
    response = await ingest.v1(body(E2_LOTS, E2_WRONG))
    assert response.status_code == 403
    assert response.content == b'{"error":"Invalid signature"}\n'


async def test_dev_key_vector(make_ingest: MakeIngest, pipeline: Pipeline) -> None:
    ingest = await make_ingest(shared_key=DEV_KEY)
    pipeline.answer = lambda e: LotTranslated(
        job_id=e.job_id,
        lot_seq=e.lot_seq,
        lot_id=e.lot_id,
        descriptions=[Description(language="en", damages="<p>Front damage.</p>")],
    )
    response = await ingest.v1(body(DEV_LOTS, DEV))
    assert response.status_code == 200
    assert response.json()["lots"][0]["lot_id"] == "demo-car-12345"


async def test_x_signature_header_is_ignored_on_this_route(ingest: Ingest) -> None:
    response = await ingest.v1(body(E1_LOTS, "0" * 64), headers={"X-Signature": E1})
    assert response.status_code == 403
