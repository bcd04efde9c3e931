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
import json
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest
from gen_common import kafka
from gen_common.breaker import BreakerSettings
from gen_common.events import (
    LOTS_ASSESSED,
    LOTS_FAILED,
    Event,
    LotAssessed,
    LotFailed,
    LotSubmitted,
)
from gen_common.settings import KafkaSettings
from gen_vision.settings import VisionOptions
from openai_sim.process import free_port, running

from tests.harness.images import ImageHost
from tests.harness.processes import child, eventually
from tests.vision.lots import lot, observe
from tests.vision.vision_process import breaker_gauges, job_calls, transitions, vision_env

pytestmark = [
    pytest.mark.pg,
    pytest.mark.kafka,
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.timeout(480),
]
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
    await kafka.ensure_topics(kafka_settings)
    job = uuid.uuid4()
    metrics_port = free_port()
    log = tmp_path / "vision.log"
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

            def keys() -> set[str]:
                return {e.lot_key for e in seen if isinstance(e, LotAssessed) and e.job_id == job}

            async def metrics_up() -> bool:
                try:
                    await breaker_gauges(http, metrics_port)
                except httpx.TransportError:
                    return False
                return True

            def batch(start: int, n: int) -> list[LotSubmitted]:
                return [lot(job, i, [images.ok(f"{i}")]) for i in range(start, start + n)]

            with child("gen_vision", env, log) as vision:
                await eventually(metrics_up, timeout=60, interval=0.1)
                await publisher.publish_many(batch(0, FIRST_LOTS))

                async def first_done() -> bool:
                    return len(keys()) == FIRST_LOTS

                await eventually(first_done, timeout=60, interval=0.1)
                sim.admin.config(
                    {"storm": {"kind": "503", "duration_s": OUTAGE_S, "endpoints": ["responses"]}}
                )
                outage_at = time.time()
                total = FIRST_LOTS
                await asyncio.sleep(BURST_AT_S)  # the fault's schedule, not a synchronisation
                await publisher.publish_many(batch(total, BURST))
                total += BURST
                for second in range(BURST_AT_S + 1, OUTAGE_S - 5):
                    await asyncio.sleep(max(0.0, outage_at + second - time.time()))
                    await publisher.publish_many(batch(total, 1))
                    total += 1
                outage_end = outage_at + OUTAGE_S

                async def finished() -> bool:
                    return len(keys()) == total

                await eventually(finished, timeout=OUTAGE_S + 300, interval=0.2)
                done_at = time.time()
                final = await breaker_gauges(http, metrics_port)
                assert vision.proc is not None
                assert vision.proc.poll() is None, "vision exited during the outage"

            calls = job_calls(sim, job)

    episodes = transitions(log)
    failed = [e for e in seen if isinstance(e, LotFailed) and e.job_id == job]
    work = await pool.fetch("SELECT status, attempts FROM vision_work WHERE job_id = $1", job)
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
    report = {
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
    (tmp_path / "report.json").write_text(json.dumps(report))
    if sys.__stderr__ is not None:
        sys.__stderr__.write(f"\n[o2] {json.dumps(report)}\n")

    assert len(before_trip) <= BREAKER.window, report  # opens within 50 calls
    assert first_trip < outage_end
    assert all(n == 0 for n in open_calls), report
    assert all(n <= WORKERS for n in in_transit), report  # one permitted call per worker at most
    assert all(n <= BREAKER.half_open_calls for n in probes), report
    assert probes, report  # it was tested half-open at least once
    assert episodes[-1].after == "closed", report
    assert final["state"] == 0, report  # /metrics agrees: closed, and opened as often as logged
    assert final["trips"] == len(opened), report
    assert failed == []
    assert len(work) == total
    assert {r["status"] for r in work} == {"done"}
    assert report["max_attempts"] <= MAX_ATTEMPTS, report
    statuses = await pool.fetch("SELECT DISTINCT status FROM lots WHERE job_id = $1", job)
    assert [r["status"] for r in statuses] == ["assessed"]
