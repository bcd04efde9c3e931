"""The 1,000-lot job through the OpenAI Batch API path of vision and translate (the simulator's
batches, its clock advanced through the admin API), with webhooks, as real processes."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import httpx
import pytest

from tests.harness.system import System

from .batch import run_batch_job

pytestmark = [pytest.mark.pg, pytest.mark.kafka, pytest.mark.e2e]

FAST_BATCH = {"SUBMIT_INTERVAL_S": "0.5", "POLL_INTERVAL_S": "1", "RETRY_DELAYS_S": "[1, 2, 5]"}
SYSTEM_OVERRIDES = {
    "vision": {
        "VISION__BATCH_MIN_LOTS": "100",
        **{f"VISION__BATCH__{k}": v for k, v in FAST_BATCH.items()},
    },
    "translate": {
        "TRANSLATE__BATCH_MIN_LOTS": "100",
        **{f"TRANSLATE__BATCH__{k}": v for k, v in FAST_BATCH.items()},
    },
}


async def test_batch_api_job_with_webhooks(
    system: System, http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    async def tick() -> None:  # 60 simulated seconds per poll: validating, lines, finalizing
        await asyncio.to_thread(system.sim.admin.clock, advance=60)

    def created() -> int:
        endpoint = system.sim.admin.stats()["endpoints"].get("batches.create", {})
        return int(endpoint.get("calls", 0))

    batches_before = created()
    figures = await run_batch_job(
        system, http, pool, 1000, budget_s=180, tick=tick, label="batch api job"
    )
    job_id = uuid.UUID(str(figures["job_id"]))
    via_batch = await pool.fetchval(
        "SELECT count(*) FROM vision_results WHERE job_id = $1 AND via_batch", job_id
    )
    assert via_batch == 1000, figures
    # vision and translate each submitted at least one batch; no realtime call for this job
    assert created() - batches_before >= 2, figures
    realtime = [
        c
        for c in system.sim.admin.calls()
        if (c.get("metadata") or {}).get("job_id") == str(job_id)
    ]
    assert realtime == [], realtime[:3]
