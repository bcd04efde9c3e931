"""Observability with every service as a real process: a sync lot's trace (from the request's
``traceparent``) on every record of the lot, read raw from Kafka, and each service's /metrics."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from gen_common import tracing
from gen_common.events import LOTS_ASSESSED, LOTS_SUBMITTED, LOTS_TRANSLATED

from tests.harness.system import System

pytestmark = [pytest.mark.pg, pytest.mark.kafka, pytest.mark.e2e]
TOPICS = (LOTS_SUBMITTED, LOTS_ASSESSED, LOTS_TRANSLATED)
FAMILIES = {
    "ingest": [
        'ingest_http_requests_total{code="200",method="POST"',
        "ingest_http_request_seconds",
    ],
    "status": ['status_http_requests_total{code="200",method="GET"', "status_http_request_seconds"],
    "notifier": [
        'gen_consumer_lag{group="notifier"',
        'gen_queue_depth{queue="webhook_deliveries",state="pending"}',
        'notifier_endpoints{breaker="open"}',
        "notifier_http_requests_total",
    ],
    "vision": [
        'gen_consumer_lag{group="vision"',
        'gen_consumer_end_offset{group="vision"',
        'gen_queue_depth{queue="vision_work",state="queued"}',
        'gen_breaker_state{stage="vision"}',
        'gen_model_calls_total{outcome="ok",stage="vision"}',
        'gen_model_tokens_total{kind="output",stage="vision"}',
        'gen_model_cost_usd_total{stage="vision"}',
    ],
}


async def trace_headers(system: System, job_id: str) -> dict[str, list[str | None]]:
    """The traceparent headers of the job's records on each topic (read from the start)."""
    consumer = AIOKafkaConsumer(
        *(system.kafka.topic(t) for t in TOPICS),
        bootstrap_servers=system.kafka.bootstrap_servers,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    found: dict[str, list[str | None]] = {t: [] for t in TOPICS}
    await consumer.start()
    try:
        async with asyncio.timeout(60):
            while not all(found.values()):
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    for r in records:
                        if (r.key or b"").decode().startswith(f"{job_id}:"):
                            topic = r.topic.removeprefix(system.kafka.topic_prefix)
                            found[topic].append(tracing.from_headers(r.headers))
    finally:
        await consumer.stop()
    return found


async def test_a_sync_lot_keeps_the_requests_trace_and_every_service_shows_metrics(
    system: System, http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    given = tracing.new()
    client = system.client(http)
    lot_id = f"trace-{uuid.uuid4().hex[:8]}"
    lot = {"lot_id": lot_id, "images": [{"url": system.images.ok(lot_id)}]}
    response = await client.post_raw(client.body([lot], ["en", "de"]), traceparent=given)
    assert response.status_code == 200, response.text
    job_id = str(
        await pool.fetchval("SELECT job_id FROM lots WHERE lot_id = to_jsonb($1::text)", lot_id)
    )
    found = await trace_headers(system, job_id)
    assert {t: len(h) for t, h in found.items()} == dict.fromkeys(TOPICS, 1)
    assert {tracing.trace_id(h[0]) for h in found.values()} == {tracing.trace_id(given)}
    assert (await client.batch_status(job_id)).status_code == 200

    for name, families in FAMILIES.items():
        text = (await http.get(f"http://127.0.0.1:{system.ports[name]}/metrics")).text
        missing = [f for f in families if not any(x.startswith(f) for x in text.splitlines())]
        assert missing == [], (name, text)
