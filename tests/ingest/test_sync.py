"""Sync mode: one lot is published, the pipeline's reply (over real Kafka) becomes the answer."""

from __future__ import annotations

import asyncpg
import pytest
from gen_common.events import Description, LotFailed, LotSubmitted, LotTranslated

from tests.ingest.conftest import Ingest, MakeIngest, Pipeline, lot, request_v1

pytestmark = [pytest.mark.pg, pytest.mark.kafka]


def translated(event: LotSubmitted, **extra: object) -> LotTranslated:
    texts = {"en": "<p>Dent on the door.</p>", "ru": "<p>Вмятина на двери.</p>"}
    descriptions = [Description(language="en", damages=texts["en"])] + [
        Description(language=code, damages=texts.get(code, f"<p>{code}</p>"))
        for code in event.languages
        if code.lower() != "en"
    ]
    return LotTranslated(
        job_id=event.job_id,
        lot_seq=event.lot_seq,
        lot_id=event.lot_id,
        descriptions=descriptions,
        **extra,
    )


async def test_one_lot_is_answered_inline(
    ingest: Ingest, pipeline: Pipeline, pool: asyncpg.Pool
) -> None:
    pipeline.answer = translated
    one = lot(0) | {"lot_id": 12345}
    response = await ingest.v1(request_v1([one], ["ru"]))
    assert response.status_code == 200, response.text
    assert response.content == (
        b'{"lots":[{"descriptions":[{"damages":"<p>Dent on the door.</p>","language":"en"},'
        b'{"damages":"<p>\\u0412\\u043c\\u044f\\u0442\\u0438\\u043d\\u0430 \\u043d\\u0430 '
        b'\\u0434\\u0432\\u0435\\u0440\\u0438.</p>","language":"ru"}],"lot_id":12345}],'
        b'"version":"1.0.0"}\n'
    )
    [event] = pipeline.seen
    assert event.mode == "sync"
    assert event.images == [i["url"] for i in one["images"]]
    assert await pool.fetchval("SELECT mode FROM jobs WHERE job_id = $1", event.job_id) == "sync"


async def test_missing_images_warnings_and_pending_languages_appear_when_present(
    ingest: Ingest, pipeline: Pipeline
) -> None:
    pipeline.answer = lambda e: translated(
        e,
        missing_images=["https://img.example/bad.jpg"],
        warnings=["translation_time_limit_exceeded"],
        pending_languages=["ja"],
    )
    languages = ["ru", "de", "fr", "es", "it", "ja"]
    response = await ingest.v1(request_v1([lot(0)], languages))
    assert response.status_code == 200
    body = response.json()
    assert body["lots"][0]["missing_images"] == ["https://img.example/bad.jpg"]
    assert body["warnings"] == [
        "processing 6 languages may increase response time",
        "translation_time_limit_exceeded",
    ]
    assert body["pending_languages"] == ["ja"]
    assert [d["language"] for d in body["lots"][0]["descriptions"]] == ["en", *languages]


async def test_unreachable_images_are_a_400_with_the_list(
    ingest: Ingest, pipeline: Pipeline
) -> None:
    bad = ["https://img.example/x.jpg", "https://img.example/y.jpg"]
    pipeline.answer = lambda e: LotFailed(
        job_id=e.job_id,
        lot_seq=e.lot_seq,
        lot_id=e.lot_id,
        stage="vision",
        reason="image_unreachable",
        missing_images=bad,
    )
    response = await ingest.v1(request_v1([lot(0)]))
    assert response.status_code == 400
    assert response.json() == {
        "error": "image_unreachable",
        "message": "Too many unreachable images",
        "missing_images": bad,
    }


async def test_other_failures_are_a_500_without_details(ingest: Ingest, pipeline: Pipeline) -> None:
    pipeline.answer = lambda e: LotFailed(
        job_id=e.job_id,
        lot_seq=e.lot_seq,
        lot_id=e.lot_id,
        stage="vision",
        reason="upstream_unavailable",
        message="Connection error: secret detail",
    )
    response = await ingest.v1(request_v1([lot(0)]))
    assert response.status_code == 500
    assert response.content == b'{"error":"Processing failed"}\n'


async def test_budget_exhaustion_is_a_504(make_ingest: MakeIngest, pipeline: Pipeline) -> None:
    ingest = await make_ingest(sync_budget_s=0.5)
    response = await ingest.v1(request_v1([lot(0)]))
    assert response.status_code == 504
    assert response.json() == {"error": "Processing timed out"}
    assert len(pipeline.seen) == 1


async def test_a_missed_reply_is_found_in_the_lots_row(
    make_ingest: MakeIngest, pipeline: Pipeline, pool: asyncpg.Pool
) -> None:
    ingest = await make_ingest(sync_budget_s=3.0)
    stored: list[LotSubmitted] = []

    def store_only(event: LotSubmitted) -> None:
        stored.append(event)  # the result lands in PostgreSQL, the event is never seen
        return None

    pipeline.answer = store_only
    import asyncio

    async def write_row() -> None:
        while not stored:
            await asyncio.sleep(0.05)
        e = stored[0]
        await pool.execute(
            """INSERT INTO lots (job_id, lot_seq, lot_id, status, descriptions, missing_images)
               VALUES ($1, 0, $2, 'completed', $3, '{}')""",
            e.job_id,
            e.lot_id,
            [{"language": "en", "damages": "<p>From the row.</p>"}],
        )

    writer = asyncio.create_task(write_row())
    response = await ingest.v1(request_v1([lot(0)], ["en"]))
    await writer
    assert response.status_code == 200
    assert response.json()["lots"][0]["descriptions"] == [
        {"damages": "<p>From the row.</p>", "language": "en"}
    ]
