"""D3: PostgreSQL connections reset mid-transaction for 2 minutes (reliability.md §7). Every chunk
that passes the fault proxy (either direction, every connection of every service) is dropped with
probability 0.05 and both peers get a TCP RST — toxiproxy's ``reset_peer``. A reset on a client →
server chunk loses a statement (the server rolls the transaction back); on a server → client chunk
the statement ran but its answer is lost, including a COMMIT's (outcome unknown to the client).

Pass: I1-I7 and no partially applied state (tests.harness.fault_run.partial_state: lot ↔ vision
result ↔ translations ↔ job counters, no row left running, the outbox drained); every process
alive, no error logged; model calls above one per lot and language bounded by the resets.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from tests.harness import checker, fault_run
from tests.harness.system import announce

pytestmark = [pytest.mark.pg, pytest.mark.kafka, pytest.mark.e2e, pytest.mark.slow]
RESET_P = 0.05
FAULT_S = 120.0
LOTS = 60
# Driver noise the fault itself causes, not service errors: asyncpg's SSL negotiation
# (sslmode=prefer) keeps a future that asyncio reports as "Future exception was never retrieved
# ... unexpected connection_lost() call" when a reset lands in that exchange and the connect
# attempt is abandoned (asyncpg.connect_utils.TLSUpgradeProto); the pool's floor keeper logs a
# WARNING with the traceback of each reconnect attempt the proxy resets, and retries.
ALLOWED = (
    *fault_run.STARTUP_NOISE,
    "unexpected connection_lost() call",
    "Failed to restore the pool connection floor; retrying",
)


@pytest.mark.timeout(720)
async def test_d3_connection_resets_mid_transaction_for_2_minutes(
    migrated: str, kafka_bootstrap: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    async with fault_run.db_fault_run(
        migrated=migrated,
        bootstrap=kafka_bootstrap,
        pool=pool,
        root=tmp_path,
        seed=3,
        lots=LOTS,
        vision_ms=1500,
    ) as run:
        run.proxy.reset_peer = RESET_P
        await asyncio.sleep(FAULT_S)  # the fault's length, not a synchronisation
        run.proxy.clear()
        at_end = await run.counts()
        status = await run.wait_final(timeout=240)
        resets = run.proxy.snapshot()["resets"]
        verdict = await run.verdict(status, in_flight=sum(resets.values()), allowed=ALLOWED)
        announce(
            "D3 connection resets",
            {
                "reset_p_per_chunk": RESET_P,
                "fault_s": FAULT_S,
                "lots_at_fault_start": run.at_start,
                "lots_at_fault_end": at_end,
                "proxy": run.proxy.snapshot(),
                "model_calls": dict(checker.model_calls(run.system, run.job.job_id)),
                "reaped": fault_run.reaped(run.system),
                "db_cleanups_failed": fault_run.db_cleanups(run.system),
                "job_totals": await fault_run.job_totals(pool, run.job.job_id),
                "error_log_lines": len(verdict.errors),
            },
        )
    verdict.assert_clean()
    assert resets.get("in_transaction", 0) >= 10, f"too few resets inside transactions: {resets}"
    assert at_end.get("completed", 0) < LOTS, f"the job was done before the fault ended: {at_end}"
