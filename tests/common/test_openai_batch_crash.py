"""Crash safety: SIGKILL the engine process around the upload / batch-create calls and restart it.

Each case ends with exactly one OpenAI batch for the chunk and every item completed exactly once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import pytest
from openai import AsyncOpenAI
from openai_sim.process import RunningSim

from tests.common.openai_batch_support import (
    TableSource,
    add_items,
    batch_rows,
    child_env,
    client,
    counts,
    drive,
    options,
    remote_batches,
    sim,
    sim_proc,
    source,
    wait_for,
)
from tests.harness.processes import Child

pytestmark = [pytest.mark.pg]
__all__ = ["client", "sim", "sim_proc", "source"]  # fixtures used by name
MODULE = "tests.common.openai_batch_support"


def endpoint_calls(sim: RunningSim, name: str) -> int:
    stats = sim.admin.stats()["endpoints"].get(name, {})
    return int(stats.get("calls", 0))


async def row_status(pool: asyncpg.Pool, stage: str, status: str) -> bool:
    rows = await batch_rows(pool, stage)
    return any(r["status"] == status for r in rows)


CASES: dict[str, dict[str, Any]] = {
    # the upload reached OpenAI, its answer never came back: row stays 'preparing'
    "after_upload": {
        "sim": {"latency": {"endpoints": {"files.create": {"dist": "fixed", "ms": 8_000}}}},
        "kill_at": "preparing",
        "endpoint": "files.create",
    },
    # the upload was recorded, every create fails: row stays 'uploaded', no batch exists
    "before_create": {
        "sim": {"faults": {"endpoints": ["batches.create"], "error_503": 1.0}},
        "kill_at": "uploaded",
        "endpoint": "batches.create",
    },
    # the create reached OpenAI (the batch exists), its answer never came back
    "after_create": {
        "sim": {"latency": {"endpoints": {"batches.create": {"dist": "fixed", "ms": 8_000}}}},
        "kill_at": "uploaded",
        "endpoint": "batches.create",
    },
}
CLEAR = {
    "latency": {"endpoints": {"files.create": None, "batches.create": None}},
    "faults": {"error_503": 0.0, "endpoints": None},
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_sigkill_around_remote_calls_loses_and_duplicates_nothing(
    case: str,
    pool: asyncpg.Pool,
    migrated: str,
    client: AsyncOpenAI,
    sim: RunningSim,
    source: TableSource,
    tmp_path: Path,
) -> None:
    spec = CASES[case]
    async with pool.acquire() as conn:
        await add_items(conn, source.table, "job-crash", 300)
    sim.admin.config(spec["sim"])
    env = child_env(migrated, sim, source, options(submit_lease_s=1.0))
    log = tmp_path / "engine.log"
    first = Child(MODULE, env, log).start()
    try:
        await wait_for(lambda: row_status(pool, source.stage, spec["kill_at"]), what="the step")
        await wait_for(_calls_at_least(sim, spec["endpoint"], 1), what=f"a {spec['endpoint']} call")
        first.kill()
    finally:
        first.stop()
    before = await batch_rows(pool, source.stage)
    assert [r["status"] for r in before] == [spec["kill_at"]], log.read_text()
    remote_before = await remote_batches(client)
    sim.admin.config(CLEAR)

    second = Child(MODULE, env, log).start()
    try:
        await drive(pool, sim, source, advance=60)
    finally:
        second.stop()

    rows = await batch_rows(pool, source.stage)
    remote = await remote_batches(client)
    submitted = [r for r in rows if r["batch_id"]]
    assert len(submitted) == 1, [dict(r) for r in rows]
    assert [b.id for b in remote] == [submitted[0]["batch_id"]]  # exactly one batch per chunk
    if case == "after_create":
        assert [b.id for b in remote_before] == [submitted[0]["batch_id"]]  # found, not redone
        assert endpoint_calls(sim, "batches.create") == 1
    if case == "after_upload":
        assert [r["status"] for r in rows] == ["abandoned", "finished"]
        released = await pool.fetchval(
            "SELECT count(*) FROM openai_batch_items WHERE batch_row = $1 AND status = 'released'",
            rows[0]["id"],
        )
        assert released == 300
    else:
        assert [r["status"] for r in rows] == ["finished"]
    assert await counts(pool, source.table) == {"done": 300}
    assert await pool.fetchval(f"SELECT max(completions) FROM {source.table}") == 1
    assert await pool.fetchval(f"SELECT max(settles) FROM {source.table}") == 1


def _calls_at_least(sim: RunningSim, name: str, n: int) -> Any:
    async def check() -> bool:
        return endpoint_calls(sim, name) >= n

    return check
