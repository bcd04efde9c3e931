"""generate-descriptions batch path, v2 job creation, idempotency, errors — real PG and Kafka."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from tests.ingest.conftest import Ingest, MakeIngest, lot, request_v1, submitted, topic_count

pytestmark = [pytest.mark.pg, pytest.mark.kafka]


async def jobs_with_webhook(pool: asyncpg.Pool, url: str) -> list[asyncpg.Record]:
    return await pool.fetch("SELECT * FROM jobs WHERE webhook_url = $1", url)


async def test_batch_is_accepted_once_every_lot_is_in_kafka(
    ingest: Ingest, pool: asyncpg.Pool, unique: str
) -> None:
    hook = f"https://client.example/{unique}"
    lots = [lot(0) | {"webhook": "https://client.example/lot0"}, lot(1), lot(2, images=20)]
    response = await ingest.v1(request_v1(lots, ["ru", "en", "de"], webhook_url=hook))
    assert response.status_code == 201, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["creation_time", "job_id", "lots_count", "status"]
    assert body["lots_count"] == 3
    assert body["status"] == "accepted"
    assert body["creation_time"].endswith("s")
    assert float(body["creation_time"][:-1]) >= 0
    assert response.text.endswith("\n")
    assert ", " not in response.text
    job_id = uuid.UUID(body["job_id"])
    [job] = await jobs_with_webhook(pool, hook)
    assert job["job_id"] == job_id
    assert job["status"] == "pending"
    assert job["mode"] == "realtime"
    assert job["total_lots"] == 3
    assert job["languages"] == ["ru", "en", "de"]
    assert job["client_id"] == "v1"
    assert job["api_version"] == 1
    events = sorted(await submitted(ingest.kafka, 3), key=lambda e: e.lot_seq)
    assert [e.lot_seq for e in events] == [0, 1, 2]
    assert {e.job_id for e in events} == {job_id}
    assert events[0].webhook == "https://client.example/lot0"
    assert events[1].webhook is None
    assert all(e.job_webhook_url == hook and e.total_lots == 3 for e in events)
    assert all(e.mode == "realtime" and e.languages == ["ru", "en", "de"] for e in events)
    assert events[2].images == [f"https://img.example/2/{i}.jpg" for i in range(20)]
    assert events[0].lot_id == "L-0"
    assert events[0].additional_info == lots[0]["additional_info"]


async def test_large_jobs_run_in_batch_mode(
    make_ingest: MakeIngest, pool: asyncpg.Pool, unique: str
) -> None:
    ingest = await make_ingest(realtime_max_lots=2)
    hook = f"https://client.example/{unique}"
    response = await ingest.v1(request_v1([lot(i) for i in range(3)], webhook_url=hook))
    assert response.status_code == 201
    [job] = await jobs_with_webhook(pool, hook)
    assert job["mode"] == "batch"
    assert {e.mode for e in await submitted(ingest.kafka, 3)} == {"batch"}


async def test_missing_lot_ids_fall_back_like_the_original(ingest: Ingest) -> None:
    lots = [
        {"images": [{"url": f"https://img.example/{uuid.uuid4()}.jpg"}]},
        {"lot_id": 7, "images": []},
    ]
    response = await ingest.v1(request_v1(lots))
    assert response.status_code == 201
    events = sorted(await submitted(ingest.kafka, 2), key=lambda e: e.lot_seq)
    assert [e.lot_id for e in events] == ["lot_0", 7]
    assert events[1].images == []


async def test_idempotency_key_replays_the_first_answer(
    ingest: Ingest, pool: asyncpg.Pool, unique: str
) -> None:
    hook = f"https://client.example/{unique}"
    body = request_v1([lot(0), lot(1)], webhook_url=hook)
    first = await ingest.v1(body, headers={"Idempotency-Key": f"k-{unique}"})
    again = await ingest.v1(body, headers={"Idempotency-Key": f"k-{unique}"})
    assert first.status_code == again.status_code == 201
    assert first.content == again.content
    assert again.headers["idempotent-replayed"] == "true"
    assert len(await jobs_with_webhook(pool, hook)) == 1
    other = await ingest.v1(
        request_v1([lot(5), lot(6)]), headers={"Idempotency-Key": f"k-{unique}"}
    )
    assert other.status_code == 422
    assert other.json() == {"error": "Idempotency-Key was already used with a different request"}
    assert await topic_count(ingest.kafka) == 2


async def test_concurrent_repeats_create_one_job(
    ingest: Ingest, pool: asyncpg.Pool, unique: str
) -> None:
    hook = f"https://client.example/{unique}"
    body = request_v1([lot(0), lot(1)], webhook_url=hook)
    answers = await asyncio.gather(
        *(ingest.v1(body, headers={"Idempotency-Key": f"c-{unique}"}) for _ in range(10))
    )
    assert {a.status_code for a in answers} == {201}
    assert len({a.content for a in answers}) == 1
    assert len(await jobs_with_webhook(pool, hook)) == 1


async def test_byte_identical_repost_is_a_repeat_within_the_window(
    make_ingest: MakeIngest, pool: asyncpg.Pool, unique: str
) -> None:
    ingest = await make_ingest()
    hook = f"https://client.example/{unique}"
    body = request_v1([lot(0), lot(1)], webhook_url=hook)
    first, again = await ingest.v1(body), await ingest.v1(body)
    assert first.content == again.content
    assert first.status_code == 201
    assert len(await jobs_with_webhook(pool, hook)) == 1
    no_window = await make_ingest(duplicate_window_s=0)
    third = await no_window.v1(body)
    assert third.status_code == 201
    assert third.content != first.content
    assert len(await jobs_with_webhook(pool, hook)) == 2


async def test_publish_failure_leaves_no_job(
    make_ingest: MakeIngest, pool: asyncpg.Pool, unique: str
) -> None:
    # Lines above Kafka's 1 MB message limit are let through validation here, so the broker
    # refuses the second lot after the first one was published.
    ingest = await make_ingest(max_line_bytes=10_000_000)
    hook = f"https://client.example/{unique}"
    aborted_before = await pool.fetchval("SELECT count(*) FROM aborted_jobs")
    huge = {"lot_id": "big", "images": [{"url": "\u0001" * 4000}] * 100}
    response = await ingest.v1(request_v1([lot(0), huge], webhook_url=hook))
    assert response.status_code == 503
    assert response.json() == {"error": "Service unavailable, no job was created"}
    assert await jobs_with_webhook(pool, hook) == []
    assert await pool.fetchval("SELECT count(*) FROM aborted_jobs") == aborted_before + 1
    [published] = await submitted(ingest.kafka, 1)
    assert await pool.fetchval(
        "SELECT reason FROM aborted_jobs WHERE job_id = $1", published.job_id
    )


async def test_unknown_routes_and_methods_are_json(ingest: Ingest) -> None:
    missing = await ingest.client.get("/nope")
    assert missing.status_code == 404
    assert missing.json() == {"error": "Not found"}
    wrong = await ingest.client.get("/api/v1/generate-descriptions")
    assert wrong.status_code == 405
    assert wrong.json() == {"error": "Method not allowed"}
    assert wrong.headers["content-type"] == "application/json"


async def test_health_and_metrics(ingest: Ingest) -> None:
    health = await ingest.client.get("/health")
    assert health.status_code == 200
    assert health.content == b'{"service":"generation-service","status":"healthy"}\n'
    metrics = await ingest.client.get("/metrics")
    assert metrics.status_code == 200
    line = 'ingest_http_requests_total{code="200",method="GET",route="/health"} 1.0'
    assert line in metrics.text


async def test_v1_rate_limit_answers_429_with_retry_after(make_ingest: MakeIngest) -> None:
    ingest = await make_ingest(v1_rate_per_s=0.5, v1_rate_burst=2)
    await ingest.app.state.deps.pool.execute("DELETE FROM rate_limits WHERE bucket = 'v1'")
    statuses = []
    for _ in range(3):
        response = await ingest.v1({"version": "1.0.0"})
        statuses.append(response.status_code)
    assert statuses == [400, 400, 429]
    assert int(response.headers["retry-after"]) >= 1
    assert response.json() == {"error": "Rate limit exceeded"}
    await ingest.app.state.deps.pool.execute("DELETE FROM rate_limits WHERE bucket = 'v1'")
