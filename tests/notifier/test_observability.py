"""The real ``python -m gen_notifier``: its /metrics families, and JSON log lines that carry the
job_id, lot_id and trace id of the record being handled."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import asyncpg
import httpx
import pytest
from gen_common import kafka, tracing
from gen_common.events import LOTS_TRANSLATED, key_of
from gen_common.settings import KafkaSettings

from tests.harness.receiver import Receiver
from tests.notifier.conftest import KEY, make_job
from tests.notifier.test_process import eventually, lot_event, notifier, notifier_env

pytestmark = [pytest.mark.pg, pytest.mark.kafka, pytest.mark.e2e]
FAMILIES = [
    'gen_consumer_lag{group="notifier",partition="0",topic="lots.translated"}',
    'gen_consumer_end_offset{group="notifier",partition="0",topic="jobs.control"}',
    'gen_queue_depth{queue="webhook_deliveries",state="pending"}',
    'gen_queue_depth{queue="webhook_deliveries",state="sending"}',
    'notifier_endpoints{breaker="open"}',
    "notifier_endpoint_breaker_trips_total",
    'notifier_deliveries_total{outcome="delivered"}',
    'notifier_attempts_total{result="success"}',
    'notifier_http_requests_total{code="200",method="GET",route="/health"}',
]


async def test_notifier_metrics_and_json_logs(
    pool: asyncpg.Pool, migrated: str, kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    await kafka.ensure_topics(kafka_settings)
    env = notifier_env(migrated, kafka_settings) | {"LOG__LEVEL": "DEBUG"}
    log = tmp_path / "notifier.log"
    trace = tracing.new()
    with Receiver([KEY]) as rx:
        job_id = await make_job(pool, total=1, lot_webhooks=[rx.hook()])
        with notifier(env, log) as proc:
            event = lot_event(job_id, 0)
            async with kafka.open_publisher(kafka_settings) as publisher:
                await publisher.publish_raw(
                    LOTS_TRANSLATED, key_of(event), kafka.encode(event), traceparent=trace
                )
            assert await asyncio.to_thread(rx.arrived.wait, 60), "no delivery arrived"

            async def delivered() -> bool:
                status = await pool.fetchval(
                    "SELECT status FROM webhook_deliveries WHERE job_id = $1", job_id
                )
                return bool(status == "delivered")

            await eventually(delivered, 60)
            base = f"http://127.0.0.1:{env['NOTIFIER__HTTP_PORT']}"
            async with httpx.AsyncClient(base_url=base) as http:

                async def serving() -> bool:
                    try:
                        return (await http.get("/health")).status_code == 200
                    except httpx.TransportError:
                        return False

                await eventually(serving, 30)
                text = (await http.get("/metrics")).text
            assert proc.poll() is None
    names = {line.rsplit(" ", 1)[0] for line in text.splitlines() if not line.startswith("#")}
    assert [f for f in FAMILIES if f not in names] == [], text
    lag = [line for line in text.splitlines() if line.startswith("gen_consumer_lag{")]
    assert all(line.endswith(" 0.0") for line in lag), "the record was handled and committed"

    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    handled = [
        line
        for line in lines
        if line["msg"] == "record handled" and line.get("job_id") == str(job_id)
    ]
    assert handled, "no log line of the handled record"
    assert handled[0]["lot_id"] == "lot-0"
    assert handled[0]["lot_seq"] == 0
    assert handled[0]["trace_id"] == tracing.trace_id(trace)
    assert handled[0]["service"] == "notifier"
    attempts = [line for line in lines if line["msg"] == "delivery attempt"]
    assert [a["job_id"] for a in attempts] == [str(job_id)]
