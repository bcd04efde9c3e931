"""C2 for the vision worker process: SIGKILL it with model calls in flight, restart it.

Scaled down to keep the run near a minute: 80 lots (not 1,000), 8 workers, simulator latency
1.5 s per vision call, lease 3 s. Pass: every lot assessed exactly once (one result row, one
LotAssessed per lot key), and model calls <= lots + calls in flight at the kill.
"""

from __future__ import annotations

import json
import signal
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest
from gen_common import kafka
from gen_common.events import LOTS_ASSESSED, LotAssessed
from gen_common.settings import KafkaSettings
from openai_sim.process import RunningSim

from tests.harness.processes import child, eventually, settings_env

from .conftest import ImageHost
from .lots import lot, observe

pytestmark = [
    pytest.mark.pg,
    pytest.mark.kafka,
    pytest.mark.e2e,
]
LOTS = 80


def child_env(migrated: str, ks: KafkaSettings, sim: RunningSim) -> dict[str, str]:
    return settings_env(
        DB__URL=migrated,
        KAFKA__BOOTSTRAP_SERVERS=ks.bootstrap_servers,
        KAFKA__TOPIC_PREFIX=ks.topic_prefix,
        KAFKA__PARTITIONS=str(ks.partitions),
        OPENAI__BASE_URL=sim.base_url,
        OPENAI__API_KEY="sk-test",
        OPENAI__MAX_RETRIES="0",
        VISION__WORKERS="8",
        VISION__LEASE_S="3",
        VISION__REAP_INTERVAL_S="0.5",
        VISION__IDLE_POLL_S="0.2",
        VISION__IMAGES='{"ssrf": {"allow_cidrs": ["127.0.0.0/8"]}}',
        LOG__LEVEL="WARNING",
    )


async def test_sigkill_with_calls_in_flight_every_lot_once(
    pool: asyncpg.Pool,
    migrated: str,
    kafka_settings: KafkaSettings,
    sim: RunningSim,
    image_host: ImageHost,
    tmp_path: Path,
    unique: str,
) -> None:
    sim.admin.config({"latency": {"kinds": {"vision": {"dist": "fixed", "ms": 1500}}}})
    await kafka.ensure_topics(kafka_settings)
    env = child_env(migrated, kafka_settings, sim)
    log = tmp_path / "vision.log"
    job = uuid.uuid4()
    images = [image_host.url(f"img/{unique}/{i}.jpg") for i in range(2)]

    async def count(sql: str) -> int:
        return int(await pool.fetchval(sql, job))

    async def in_flight() -> int:
        return await count(
            "SELECT count(*) FROM vision_calls WHERE job_id = $1 AND finished_at IS NULL"
        )

    async def busy() -> bool:
        done = await count("SELECT count(*) FROM vision_results WHERE job_id = $1")
        return done >= 16 and await in_flight() >= 6

    async with observe(kafka_settings, pool, {LOTS_ASSESSED: LotAssessed}) as seen:
        with child("gen_vision", env, log) as first:
            async with kafka.open_publisher(kafka_settings) as publisher:
                await publisher.publish_many([lot(job, i, images, total=LOTS) for i in range(LOTS)])
            await eventually(busy, timeout=60, interval=0.05)
            first.send(signal.SIGKILL)
            first.wait(10)
        killed_in_flight = await in_flight()
        done_at_kill = await count("SELECT count(*) FROM vision_results WHERE job_id = $1")
        with child("gen_vision", env, log):

            async def finished() -> bool:
                n = await count("SELECT count(*) FROM vision_results WHERE job_id = $1")
                keys = {e.lot_key for e in seen if isinstance(e, LotAssessed) and e.job_id == job}
                return n == LOTS and len(keys) == LOTS

            await eventually(finished, timeout=90, interval=0.2)

    calls = [c for c in sim.admin.calls() if (c["metadata"] or {}).get("job_id") == str(job)]
    keys = [e.lot_key for e in seen if isinstance(e, LotAssessed) and e.job_id == job]
    report = {
        "lots": LOTS,
        "done_at_kill": done_at_kill,
        "in_flight_at_kill": killed_in_flight,
        "model_calls": len(calls),
        "lot_assessed_events": len(keys),
    }
    (tmp_path / "report.json").write_text(json.dumps(report))
    sys.__stderr__.write(f"\n[c2] {json.dumps(report)}\n") if sys.__stderr__ else None
    assert killed_in_flight >= 1
    assert len(set(keys)) == LOTS
    assert len(calls) <= LOTS + killed_in_flight, report
    rows = await pool.fetch("SELECT status, attempts FROM vision_work WHERE job_id = $1", job)
    assert {r["status"] for r in rows} == {"done"}
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM lots WHERE job_id = $1 AND status = 'assessed'", job
        )
        == LOTS
    )
