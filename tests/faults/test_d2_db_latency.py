"""D2: every PostgreSQL connection of every service gets 2 s of latency (each server → client chunk
held 2 s in tests.harness.fault_proxy) for 60 s while a job is in flight (reliability.md §7).
60 s needs the job's usage kept off the ``jobs`` row (gen_common.job_usage): while vision and
translate updated that row per result, their statements queued on its lock behind the notifier's
batch transaction for over 30 s (command_timeout) and a translate lease (40 s) ran out.

Pass: no lease at least 3x the worst statement latency (a probe's ``SELECT 1`` through the proxy:
two round trips, ~4 s) expires spuriously (a ``running`` row past its ``lease_until``, sampled
straight from PostgreSQL every 0.25 s); where a shorter lease does expire (vision's 10 s), no lot
is completed twice and none is lost (I1-I4, I6 with the expired leases as the allowed extra
calls, I7); every lot completes after, no process exits or logs an error.
"""

from __future__ import annotations

import time
from pathlib import Path

import asyncpg
import pytest

from tests.harness import checker, fault_run
from tests.harness.fault_proxy import FaultProxy
from tests.harness.system import announce

pytestmark = [pytest.mark.pg, pytest.mark.kafka]
LATENCY_S = 2.0
FAULT_S = 60.0
LOTS = 40
LEASE_OF = {
    "vision_work": "vision",
    "translate_work": "translate",
    "webhook_deliveries": "notifier",
}


async def test_proxy_latency_is_per_round_trip_and_reset_is_a_connection_error(
    migrated: str,
) -> None:
    with FaultProxy.for_url(migrated) as proxy:
        conn = await asyncpg.connect(proxy.url(migrated))
        try:
            started = time.monotonic()
            await conn.fetchval("SELECT 1")
            plain = time.monotonic() - started
            proxy.latency_s = 0.3
            started = time.monotonic()
            await conn.fetchval("SELECT 1")
            delayed = time.monotonic() - started
            proxy.clear()
            await conn.execute("BEGIN")
            proxy.reset_peer = 1.0
            with pytest.raises((ConnectionError, asyncpg.PostgresConnectionError)):
                await conn.execute("SELECT 2")
        finally:
            conn.terminate()
    assert plain < 0.25
    assert 0.3 <= delayed < 0.9
    assert proxy.snapshot()["resets"] == {"in_transaction": 1}


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_d2_two_seconds_of_db_latency_for_60s(
    migrated: str, kafka_bootstrap: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    async with fault_run.db_fault_run(
        migrated=migrated,
        bootstrap=kafka_bootstrap,
        pool=pool,
        root=tmp_path,
        seed=2,
        lots=LOTS,
        vision_ms=1000,  # lots in flight in every stage when the fault starts
    ) as run:
        watch = fault_run.LeaseWatch(pool, run.job.job_id)
        probe = await asyncpg.connect(run.proxy.url(migrated))
        worst = 0.0
        try:
            async with watch.running():
                run.proxy.latency_s = LATENCY_S
                ends = time.monotonic() + FAULT_S
                while time.monotonic() < ends:  # the fault's length, probed meanwhile
                    started = time.monotonic()
                    await probe.fetchval("SELECT 1")
                    worst = max(worst, time.monotonic() - started)
                run.proxy.clear()
                at_end = await run.counts()
                status = await run.wait_final(timeout=180)
        finally:
            run.proxy.clear()
            await probe.close()
        expired, reaped = watch.counts(), fault_run.reaped(run.system)
        # Expired vision leases (and what the reaper requeued) may each repeat a model call.
        extra = expired.get("vision_work", 0) + reaped["vision"]
        verdict = await run.verdict(status, in_flight=extra, allowed=fault_run.STARTUP_NOISE)
        leases = {
            table: float(run.system.envs[service][f"{service.upper()}__LEASE_S"])
            for table, service in LEASE_OF.items()
        }
        snap = run.proxy.snapshot()
        announce(
            "D2 db latency",
            {
                "latency_s": LATENCY_S,
                "fault_s": FAULT_S,
                "worst_probe_statement_s": round(worst, 2),
                "lots_at_fault_start": run.at_start,
                "lots_at_fault_end": at_end,
                "lease_s": leases,
                "expired_leases_seen": expired,
                "reaped": reaped,
                "lease_samples": watch.samples,
                "proxy": snap,
                "db_cleanups_failed": fault_run.db_cleanups(run.system),
                "model_calls": dict(checker.model_calls(run.system, run.job.job_id)),
            },
        )
    verdict.assert_clean()
    # A lease at least 3x the worst statement latency never expires spuriously.
    long_enough = [t for t, lease in leases.items() if lease >= 3 * worst]
    assert all(expired.get(t, 0) == 0 for t in long_enough), (long_enough, expired)
    assert at_end.get("completed", 0) < LOTS, f"the job was done before the fault ended: {at_end}"
    assert snap["delayed_chunks"] > 100, "the latency was never applied"
