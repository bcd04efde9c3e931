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
import time
from pathlib import Path

import asyncpg
import pytest
from gen_common.settings import KafkaSettings

from tests.harness.figures import report
from tests.harness.marks import SLOW_PROCESS_TEST
from tests.harness.processes import eventually
from tests.harness.vision_rig import vision_rig
from tests.vision.lots import failures, lot_statuses, work_rows, work_statuses
from tests.vision.vision_process import per_second, transitions

pytestmark = [*SLOW_PROCESS_TEST, pytest.mark.timeout(300)]
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
    samples: list[dict[str, float]] = []
    async with vision_rig(
        migrated, kafka_settings, pool, tmp_path, workers=WORKERS, latency_ms=LATENCY_MS
    ) as rig:

        async def sample() -> None:
            while True:
                samples.append(await rig.gauges())
                await asyncio.sleep(1)

        async def flowing() -> bool:
            return len(rig.assessed()) >= 10

        async def finished() -> bool:
            n = await pool.fetchval(
                "SELECT count(*) FROM vision_work WHERE job_id = $1 AND status = 'done'", rig.job
            )
            return int(n) == total and len(rig.assessed()) == total

        sampler = asyncio.create_task(sample())
        total = await rig.submit(0, FIRST_LOTS)
        await eventually(flowing, timeout=60)
        storm = {"kind": "429", "duration_s": STORM_S, "retry_after_ms": RETRY_AFTER_MS}
        rig.sim.admin.config({"storm": {**storm, "endpoints": ["responses"]}})
        storm_at = time.time()
        done_at_storm = len(rig.assessed())
        for second in range(STORM_S - 5):
            total = await rig.submit(total, PER_SECOND)
            await asyncio.sleep(max(0.0, storm_at + second + 1 - time.time()))
        storm_end = storm_at + STORM_S
        await eventually(finished, timeout=STORM_S + 120, interval=0.2)
        done_at = time.time()
        final = await rig.gauges()
        sampler.cancel()
        await asyncio.gather(sampler, return_exceptions=True)
        assert rig.running(), "vision exited during the storm"
        calls = rig.calls()
        stats = rig.sim.admin.stats()

    rates = per_second(calls, storm_at + SETTLE_S, storm_end)
    in_storm = [c for c in calls if storm_at <= c["time"] < storm_end]
    work = await work_rows(pool, rig.job)
    figures = {
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
    report(tmp_path, "o1", figures)

    assert figures["429s"] >= 10, figures  # the storm really hit the calls
    assert failures(rig.seen, rig.job) == []
    assert await work_statuses(pool, rig.job) == {"done": total}
    assert set(await lot_statuses(pool, rig.job)) == {"assessed"}
    # Breaker never opened: no transition logged, trips 0, every sample read closed.
    assert transitions(rig.log) == []
    assert final["trips"] == 0
    assert len(samples) >= STORM_S // 2, len(samples)  # one a second, through the storm
    assert all(s["state"] == 0 and s["trips"] == 0 for s in samples)
    # Calls slowed down: at most one per concurrency slot per second once 5 s have passed.
    assert max(rates) <= WORKERS, figures
    # 429s cost no attempt: every lot got its answer on its first counted attempt.
    assert figures["max_attempts"] == 1, figures
