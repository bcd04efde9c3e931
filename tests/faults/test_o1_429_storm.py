"""O1 (reliability.md §7, issue 5): a 60 s storm of 429s (``retry-after-ms: 2000``) from the
simulator while lots flow through a real ``python -m gen_vision``.

Lots are being assessed when the storm starts, and two more arrive every second during it.
Pass: no lot fails (every lot assessed, no LotFailed, no attempt used up by a 429); the breaker
never opens (no state change in the process's log, ``vision_breaker_trips`` stays 0, the state
gauge reads closed throughout); from 5 s into the storm, the calls reaching the simulator stay at
or below one per concurrency slot (``VISION__WORKERS``) per second.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest
from gen_common import kafka
from gen_common.events import LOTS_ASSESSED, LOTS_FAILED, Event, LotAssessed, LotFailed
from gen_common.settings import KafkaSettings
from openai_sim.process import free_port, running

from tests.harness.images import ImageHost
from tests.harness.processes import child, eventually
from tests.vision.lots import lot, observe
from tests.vision.vision_process import (
    breaker_gauges,
    job_calls,
    per_second,
    transitions,
    vision_env,
)

pytestmark = [
    pytest.mark.pg,
    pytest.mark.kafka,
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.timeout(300),
]
STORM_S = 60
RETRY_AFTER_MS = 2000
SETTLE_S = 5  # the calls/s bound applies from this far into the storm
WORKERS = 8
FIRST_LOTS = 60
PER_SECOND = 2  # lots submitted every second of the storm
LATENCY_MS = 200


async def test_60s_of_429_no_lot_fails_breaker_stays_closed_calls_slow_down(
    pool: asyncpg.Pool, migrated: str, kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    await kafka.ensure_topics(kafka_settings)
    job = uuid.uuid4()
    metrics_port = free_port()
    log = tmp_path / "vision.log"
    samples: list[dict[str, float]] = []
    with (
        running({"latency": {"kinds": {"vision": {"dist": "fixed", "ms": LATENCY_MS}}}}) as sim,
        ImageHost() as images,
    ):
        env = vision_env(
            migrated,
            kafka_settings,
            sim,
            VISION__WORKERS=str(WORKERS),
            VISION__METRICS_PORT=str(metrics_port),
        )
        topics: dict[str, type[Event]] = {LOTS_ASSESSED: LotAssessed, LOTS_FAILED: LotFailed}
        async with (
            httpx.AsyncClient(timeout=5) as http,
            observe(kafka_settings, pool, topics) as seen,
            kafka.open_publisher(kafka_settings) as publisher,
        ):

            async def assessed() -> int:
                return sum(isinstance(e, LotAssessed) and e.job_id == job for e in seen)

            async def sample() -> None:
                while True:
                    samples.append(await breaker_gauges(http, metrics_port))
                    await asyncio.sleep(1)

            with child("gen_vision", env, log) as vision:

                async def metrics_up() -> bool:
                    try:
                        await breaker_gauges(http, metrics_port)
                    except httpx.TransportError:
                        return False
                    return True

                await eventually(metrics_up, timeout=60, interval=0.1)
                sampler = asyncio.create_task(sample())
                total = FIRST_LOTS
                lots = [lot(job, i, [images.ok(f"{i}")]) for i in range(FIRST_LOTS)]
                await publisher.publish_many(lots)

                async def flowing() -> bool:
                    return await assessed() >= 10

                await eventually(flowing, timeout=60)
                storm = {"kind": "429", "duration_s": STORM_S, "retry_after_ms": RETRY_AFTER_MS}
                sim.admin.config({"storm": {**storm, "endpoints": ["responses"]}})
                storm_at = time.time()
                done_at_storm = await assessed()
                for second in range(STORM_S - 5):
                    new = [
                        lot(job, total + k, [images.ok(f"{total + k}")]) for k in range(PER_SECOND)
                    ]
                    await publisher.publish_many(new)
                    total += len(new)
                    await asyncio.sleep(max(0.0, storm_at + second + 1 - time.time()))
                storm_end = storm_at + STORM_S

                async def finished() -> bool:
                    n = await pool.fetchval(
                        "SELECT count(*) FROM vision_work WHERE job_id = $1 AND status = 'done'",
                        job,
                    )
                    return int(n) == total and len(_keys(seen, job)) == total

                await eventually(finished, timeout=STORM_S + 120, interval=0.2)
                done_at = time.time()
                final = await breaker_gauges(http, metrics_port)
                sampler.cancel()
                await asyncio.gather(sampler, return_exceptions=True)
                assert vision.proc is not None
                assert vision.proc.poll() is None, "vision exited during the storm"

            calls = job_calls(sim, job)
            stats = sim.admin.stats()

    rates = per_second(calls, storm_at + SETTLE_S, storm_end)
    in_storm = [c for c in calls if storm_at <= c["time"] < storm_end]
    failed = [e for e in seen if isinstance(e, LotFailed) and e.job_id == job]
    work = await pool.fetch("SELECT status, attempts FROM vision_work WHERE job_id = $1", job)
    report = {
        "lots": total,
        "assessed_before_storm": done_at_storm,
        "calls_in_storm": len(in_storm),
        "429s": sum(c["status"] == 429 for c in in_storm),
        "calls_first_5s": len([c for c in in_storm if c["time"] < storm_at + SETTLE_S]),
        "max_calls_per_s_after_5s": max(rates),
        "mean_calls_per_s_after_5s": round(sum(rates) / len(rates), 2),
        "slots": WORKERS,
        "drained_s_after_storm": round(done_at - storm_end, 1),
        "breaker_final": final,
        "max_attempts": max(r["attempts"] for r in work),
        "sim_429_total": stats["totals"]["status"].get("429", 0),
    }
    (tmp_path / "report.json").write_text(json.dumps(report))
    if sys.__stderr__ is not None:
        sys.__stderr__.write(f"\n[o1] {json.dumps(report)}\n")

    assert report["429s"] >= 10, report  # the storm really hit the calls
    assert failed == []
    assert len(work) == total
    assert {r["status"] for r in work} == {"done"}
    statuses = await pool.fetch("SELECT DISTINCT status FROM lots WHERE job_id = $1", job)
    assert [r["status"] for r in statuses] == ["assessed"]
    # Breaker never opened: no transition logged, trips 0, every sample read closed.
    assert transitions(log) == []
    assert final["trips"] == 0
    assert len(samples) >= STORM_S // 2, len(samples)  # one a second, through the storm
    assert all(s["state"] == 0 and s["trips"] == 0 for s in samples)
    # Calls slowed down: at most one per concurrency slot per second once 5 s have passed.
    assert max(rates) <= WORKERS, report
    # 429s cost no attempt: every lot got its answer on its first counted attempt.
    assert report["max_attempts"] == 1, report


def _keys(seen: list[Event], job: uuid.UUID) -> set[str]:
    return {e.lot_key for e in seen if isinstance(e, LotAssessed) and e.job_id == job}
