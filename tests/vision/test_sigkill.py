"""C2 / issue 5: SIGKILL the vision process during a 1,000-lot job, restart it.

A real ``python -m gen_vision`` (realtime path: the default ``VISION__BATCH_MIN_LOTS`` is None,
so a 1,000-lot job is worked by the realtime workers), real Kafka and PostgreSQL, the simulator
answering every vision call after a fixed latency. The first process is killed once a third of
the lots are assessed and most workers have a call in flight; a second process finishes the job.

Calls in flight at the kill, from the simulator's call log (a call is logged when it reaches the
simulator, and answered ``LATENCY_MS`` later):

- ``in_flight`` = calls the simulator received from the first process (every call logged before
  the restart) minus the lots that process stored: calls started whose outcome never landed.
- ``unanswered`` = of those, the calls still unanswered by the simulator at the kill instant
  (logged at ``t <= kill < t + latency``). The rest of ``in_flight`` were answered, but the
  process died before it stored the answer.

Pass: every lot assessed exactly once (one result row, lots row 'assessed', one LotAssessed
event id per lot on Kafka — the relay may publish a record twice after the kill, never a second
event), model calls <= 1,000 + in_flight, and in_flight <= workers.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from pathlib import Path

import asyncpg
import pytest
from gen_common import kafka
from gen_common.events import LOTS_ASSESSED, LotAssessed
from gen_common.settings import KafkaSettings
from openai_sim.process import RunningSim

from tests.harness.figures import report
from tests.harness.marks import SLOW_PROCESS_TEST
from tests.harness.processes import child, eventually
from tests.harness.sigkill import sigkill_and_settle

from .conftest import ImageHost
from .lots import assessed_event_ids, lot, lot_statuses, observe, work_statuses
from .vision_process import job_calls, vision_env

pytestmark = [*SLOW_PROCESS_TEST, pytest.mark.timeout(300)]
LOTS = 1_000
WORKERS = 16
LATENCY_MS = 400
KILL_AFTER = LOTS // 3


async def test_sigkill_during_a_1000_lot_job_every_lot_once(
    pool: asyncpg.Pool,
    migrated: str,
    kafka_settings: KafkaSettings,
    sim: RunningSim,
    image_host: ImageHost,
    tmp_path: Path,
    unique: str,
) -> None:
    sim.admin.config({"latency": {"kinds": {"vision": {"dist": "fixed", "ms": LATENCY_MS}}}})
    await kafka.ensure_topics(kafka_settings)
    env = vision_env(
        migrated, kafka_settings, sim, VISION__WORKERS=str(WORKERS), VISION__LEASE_S="3"
    )
    log = tmp_path / "vision.log"
    job = uuid.uuid4()
    images = [image_host.url(f"img/{unique}/a.jpg")]
    began = time.monotonic()

    async def count(sql: str) -> int:
        return int(await pool.fetchval(sql, job))

    async def results() -> int:
        return await count("SELECT count(*) FROM vision_results WHERE job_id = $1")

    async def unfinished_calls() -> int:
        return await count(
            "SELECT count(*) FROM vision_calls WHERE job_id = $1 AND finished_at IS NULL"
        )

    async def busy() -> bool:
        return await results() >= KILL_AFTER and await unfinished_calls() >= WORKERS // 2

    async with observe(kafka_settings, pool, {LOTS_ASSESSED: LotAssessed}) as seen:
        with child("gen_vision", env, log) as first:
            async with kafka.open_publisher(kafka_settings) as publisher:
                await publisher.publish_many([lot(job, i, images, total=LOTS) for i in range(LOTS)])
            await eventually(busy, timeout=120, interval=0.05)
            # Every transaction the killed process had sent has committed or rolled back after.
            killed_at = await sigkill_and_settle(pool, first)
        stored_by_first = await results()
        calls_by_first = len(job_calls(sim, job))
        killed_for = time.monotonic()
        with child("gen_vision", env, log):

            async def finished() -> bool:
                return len(assessed_event_ids(seen, job)) == LOTS and await results() == LOTS

            await eventually(finished, timeout=180, interval=0.2)
        restart_to_done = time.monotonic() - killed_for

    calls = job_calls(sim, job)
    latency = LATENCY_MS / 1000
    unanswered = sum(c["time"] <= killed_at < c["time"] + latency for c in calls)
    in_flight = calls_by_first - stored_by_first
    per_lot = Counter(int(c["metadata"]["lot_seq"]) for c in calls)
    event_ids = assessed_event_ids(seen, job)
    figures = {
        "lots": LOTS,
        "workers": WORKERS,
        "latency_ms": LATENCY_MS,
        "stored_at_kill": stored_by_first,
        "calls_before_restart": calls_by_first,
        "in_flight_at_kill": in_flight,
        "unanswered_by_sim_at_kill": unanswered,
        "model_calls": len(calls),
        "lots_called_twice": sum(n == 2 for n in per_lot.values()),
        "lot_assessed_records": sum(isinstance(e, LotAssessed) and e.job_id == job for e in seen),
        "restart_to_done_s": round(restart_to_done, 1),
        "total_s": round(time.monotonic() - began, 1),
    }
    report(tmp_path, "c2", figures)

    assert 1 <= unanswered <= in_flight <= WORKERS, figures
    assert len(calls) <= LOTS + in_flight, figures
    assert sorted(per_lot) == list(range(LOTS))
    assert max(per_lot.values()) <= 2, figures
    assert len(event_ids) == LOTS
    assert all(len(ids) == 1 for ids in event_ids.values()), figures
    assert await work_statuses(pool, job) == {"done": LOTS}
    assert await lot_statuses(pool, job) == {"assessed": LOTS}
    assert await results() == LOTS
    failed = await count(
        "SELECT count(*) FROM vision_calls WHERE job_id = $1 AND outcome IS DISTINCT FROM 'ok'"
        " AND finished_at IS NOT NULL"
    )
    assert failed == 0  # no call failed: every duplicate comes from the kill
