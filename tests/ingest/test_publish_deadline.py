"""A submission whose lots Kafka does not acknowledge is answered 503 within ``publish_timeout_s``
and its job is aborted: no jobs row, an ``aborted_jobs`` row (vision skips the job's lots when
they reach Kafka later, tests/vision/test_handler.py), and its Idempotency-Key never replays a
201 — a retry after the outage creates the job.

The outage is real: this test starts its own one-node Kafka (it SIGSTOPs it) and runs ingest
against it; the session's PostgreSQL holds the state.
"""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator

import asyncpg
import pytest
from gen_devstack import kafka_local

from tests.ingest.conftest import Ingest, MakeIngest, lot, request_v1, submitted

pytestmark = [pytest.mark.pg, pytest.mark.kafka]
DEADLINE_S = 1.5
SLACK_S = 2.5  # a loaded 2-core machine; without the deadline the answer waits for SIGCONT


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[kafka_local.Cluster]:
    cluster = kafka_local.Cluster(tmp_path_factory.mktemp("kafka"), nodes=1, heap_mb=256)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


async def aborted_since(pool: asyncpg.Pool, since: object) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT job_id, reason FROM aborted_jobs WHERE aborted_at >= $1 ORDER BY aborted_at",
        since,
    )


async def test_paused_broker_batch_is_503_within_the_deadline_and_aborted(
    broker: kafka_local.Cluster, make_ingest: MakeIngest, pool: asyncpg.Pool, unique: str
) -> None:
    ingest: Ingest = await make_ingest(
        kafka={"bootstrap_servers": broker.bootstrap_servers}, publish_timeout_s=DEADLINE_S
    )
    hook = f"https://client.example/{unique}"
    body = request_v1([lot(0), lot(1), lot(2)], webhook_url=hook)
    headers = {"Idempotency-Key": f"deadline-{unique}"}
    since = await pool.fetchval("SELECT now()")
    node = broker.members[0]
    broker.signal(node, signal.SIGSTOP)
    try:
        for _ in range(2):  # the repeat is a new attempt, never a replayed answer
            began = time.monotonic()
            response = await ingest.v1(body, headers=headers)
            took = time.monotonic() - began
            assert response.status_code == 503, response.text
            assert response.json() == {"error": "Service unavailable, no job was created"}
            assert response.headers["retry-after"] == "5"
            assert "idempotent-replayed" not in response.headers
            assert DEADLINE_S <= took < DEADLINE_S + SLACK_S, took
        assert await pool.fetch("SELECT 1 FROM jobs WHERE webhook_url = $1", hook) == []
    finally:
        broker.signal(node, signal.SIGCONT)
    aborted = await aborted_since(pool, since)
    assert len(aborted) == 2
    assert all("TimeoutError" in row["reason"] for row in aborted)
    ids = {row["job_id"] for row in aborted}
    assert await pool.fetchval("SELECT count(*) FROM jobs WHERE job_id = ANY($1)", ids) == 0

    retry = await ingest.v1(body, headers=headers)  # the broker is back: the job is created
    assert retry.status_code == 201, retry.text
    assert "idempotent-replayed" not in retry.headers
    job_id = uuid.UUID(retry.json()["job_id"])
    assert job_id not in ids
    [job] = await pool.fetch("SELECT job_id FROM jobs WHERE webhook_url = $1", hook)
    assert job["job_id"] == job_id
    # The aborted jobs' records were still queued in the producer and reached Kafka after
    # SIGCONT: exactly what aborted_jobs is for (the consumers skip them).
    events = await submitted(ingest.kafka, 9)
    assert {e.job_id for e in events} == ids | {job_id}


async def test_paused_broker_v2_job_is_503_within_the_deadline_and_aborted(
    broker: kafka_local.Cluster, make_ingest: MakeIngest, pool: asyncpg.Pool, unique: str
) -> None:
    ingest: Ingest = await make_ingest(
        kafka={"bootstrap_servers": broker.bootstrap_servers}, publish_timeout_s=DEADLINE_S
    )
    hook = f"https://client.example/{unique}"
    images = [f"https://img.example/{unique}/{i}.jpg" for i in range(2)]
    job = {
        "lots": [{"lot_id": f"v2-{n}", "images": images} for n in range(2)],
        "languages": ["en", "de"],
        "webhook_url": hook,
    }
    since = await pool.fetchval("SELECT now()")
    node = broker.members[0]
    broker.signal(node, signal.SIGSTOP)
    try:
        began = time.monotonic()
        response = await ingest.v2(job)
        took = time.monotonic() - began
    finally:
        broker.signal(node, signal.SIGCONT)
    assert response.status_code == 503, response.text
    assert response.json() == {"error": "Service unavailable, no job was created"}
    assert DEADLINE_S <= took < DEADLINE_S + SLACK_S, took
    assert await pool.fetch("SELECT 1 FROM jobs WHERE webhook_url = $1", hook) == []
    [aborted] = await aborted_since(pool, since)
    assert "TimeoutError" in aborted["reason"]
