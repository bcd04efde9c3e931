"""O2 (reliability.md §7, issue 5): 90 s of 503s from the simulator under a real
``python -m gen_vision`` with its default breaker (window 50, at least 20 calls, 50 % failures,
open 30 s doubling on every failed half-open test, 3 half-open probes) and default
``max_attempts`` (6).

Lots are assessed before the outage; 3 s into it a burst of lots arrives, then one lot a second
until shortly before its end. Breaker episodes come from the process's JSON log (state changes),
calls from the simulator's call log (a call is logged when it arrives).

Pass: the breaker opens within 50 calls of the outage; while it is open no call reaches the
simulator (calls that were already on their way at the trip get ``IN_TRANSIT_S``); while half-open
at most the 3 probes do; after recovery every lot is assessed (no LotFailed), no lot used more
than the configured attempts, and the breaker ends closed.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg
import pytest
from gen_common.breaker import BreakerSettings
from gen_common.settings import KafkaSettings
from gen_vision.settings import VisionOptions

from tests.harness.figures import report
from tests.harness.marks import SLOW_PROCESS_TEST
from tests.harness.processes import eventually
from tests.harness.vision_rig import vision_rig
from tests.vision.lots import failures, lot_statuses, work_rows, work_statuses
from tests.vision.vision_process import transitions

pytestmark = [*SLOW_PROCESS_TEST, pytest.mark.timeout(480)]
OUTAGE_S = 90
BURST_AT_S = 3  # the first trip comes no earlier, so the 30 s + 60 s open spells end after 90 s
WORKERS = 8
FIRST_LOTS = 40
BURST = 60
LATENCY_MS = 100
IN_TRANSIT_S = 2.0  # permitted just before the trip, still writing its call-log row
BREAKER = BreakerSettings()
MAX_ATTEMPTS = VisionOptions().max_attempts


async def test_90s_of_503_breaker_opens_no_calls_while_open_every_lot_completes(
    pool: asyncpg.Pool, migrated: str, kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    async with vision_rig(
        migrated, kafka_settings, pool, tmp_path, workers=WORKERS, latency_ms=LATENCY_MS
    ) as rig:

        async def all_assessed() -> bool:
            return len(rig.assessed()) == total

        total = await rig.submit(0, FIRST_LOTS)
        await eventually(all_assessed, timeout=60, interval=0.1)
        rig.sim.admin.config(
            {"storm": {"kind": "503", "duration_s": OUTAGE_S, "endpoints": ["responses"]}}
        )
        outage_at = time.time()
        await asyncio.sleep(BURST_AT_S)  # the fault's schedule, not a synchronisation
        total = await rig.submit(total, BURST)
        for second in range(BURST_AT_S + 1, OUTAGE_S - 5):
            await asyncio.sleep(max(0.0, outage_at + second - time.time()))
            total = await rig.submit(total, 1)
        outage_end = outage_at + OUTAGE_S
        await eventually(all_assessed, timeout=OUTAGE_S + 300, interval=0.2)
        done_at = time.time()
        final = await rig.gauges()
        assert rig.running(), "vision exited during the outage"
        calls = rig.calls()

    episodes = transitions(rig.log)
    work = await work_rows(pool, rig.job)
    opened = [t for t in episodes if t.after == "open"]
    assert opened, f"the breaker never opened: {episodes}"
    first_trip = opened[0].at
    before_trip = [c for c in calls if outage_at <= c["time"] <= first_trip]
    # Open spells [open, next change) and half-open spells [half_open, next change).
    open_calls: list[int] = []
    in_transit: list[int] = []
    probes: list[int] = []
    for i, t in enumerate(episodes):
        end = episodes[i + 1].at if i + 1 < len(episodes) else float("inf")
        if t.after == "open":
            in_transit.append(sum(t.at < c["time"] <= t.at + IN_TRANSIT_S for c in calls))
            open_calls.append(sum(t.at + IN_TRANSIT_S < c["time"] < end for c in calls))
        elif t.after == "half_open":
            probes.append(sum(t.at <= c["time"] < end for c in calls))
    figures = {
        "lots": total,
        "calls": len(calls),
        "calls_503": sum(c["status"] == 503 for c in calls),
        "calls_to_first_open": len(before_trip),
        "first_open_after_s": round(first_trip - outage_at, 1),
        "episodes": [(round(t.at - outage_at, 1), t.after) for t in episodes],
        "calls_while_open": open_calls,
        "calls_in_transit_at_trip": in_transit,
        "calls_while_half_open": probes,
        "max_attempts": max(r["attempts"] for r in work),
        "configured_max_attempts": MAX_ATTEMPTS,
        "drained_s_after_outage": round(done_at - outage_end, 1),
        "breaker_final": final,
    }
    report(tmp_path, "o2", figures)

    assert len(before_trip) <= BREAKER.window, figures  # opens within 50 calls
    assert first_trip < outage_end
    assert all(n == 0 for n in open_calls), figures
    assert all(n <= WORKERS for n in in_transit), figures  # one permitted call per worker at most
    assert all(n <= BREAKER.half_open_calls for n in probes), figures
    assert probes, figures  # it was tested half-open at least once
    assert episodes[-1].after == "closed", figures
    assert final["state"] == 0, figures  # /metrics agrees: closed, and opened as often as logged
    assert final["trips"] == len(opened), figures
    assert failures(rig.seen, rig.job) == []
    assert await work_statuses(pool, rig.job) == {"done": total}
    assert figures["max_attempts"] <= MAX_ATTEMPTS, figures
    assert set(await lot_statuses(pool, rig.job)) == {"assessed"}
