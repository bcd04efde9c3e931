"""A batch job through every service as a real process, realtime path: per-lot webhooks and a job
webhook_url; every lot completed once, every webhook verified, status and results complete."""

from __future__ import annotations

import asyncpg
import httpx
import pytest

from tests.harness import checker
from tests.harness.system import System

from .batch import run_batch_job

pytestmark = [pytest.mark.pg, pytest.mark.kafka, pytest.mark.e2e]


async def test_batch_job_200_lots_with_webhooks(
    system: System, http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    await run_batch_job(system, http, pool, 200, budget_s=120)


@pytest.mark.slow
async def test_batch_job_1000_lots_with_webhooks(
    system: System, http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    await run_batch_job(system, http, pool, 1000, budget_s=180)


async def test_no_errors_in_service_logs(system: System) -> None:
    """I9, after the jobs above (before shutdown)."""
    assert checker.log_errors(system, allowed=("GroupCoordinatorNotAvailable",)) == []
