"""Ingest's periodic purge drops idle rate-limit buckets (and expired idempotency records), keeps
buckets in use, and a purged bucket decides like a fresh one."""

from __future__ import annotations

import asyncpg
import pytest
from gen_ingest import admission

from tests.harness.processes import eventually
from tests.ingest.conftest import MakeIngest

pytestmark = [pytest.mark.pg, pytest.mark.kafka]


async def test_purge_drops_idle_rate_limit_buckets_and_keeps_busy_ones(
    make_ingest: MakeIngest, pool: asyncpg.Pool, unique: str
) -> None:
    idle, busy = f"idle-{unique}", f"busy-{unique}"
    await pool.execute(
        """INSERT INTO rate_limits (bucket, tat, allowed) VALUES
           ($1, now() - interval '1 second', true), ($2, now() + interval '1 hour', false)""",
        idle,
        busy,
    )
    await pool.execute(
        """INSERT INTO idempotency_keys (client_id, key, request_hash, expires_at)
           VALUES ($1, 'old', '\\x00', now() - interval '1 second')""",
        f"client-{unique}",
    )
    await make_ingest(purge_interval_s=0.1)

    async def purged() -> bool:
        n = await pool.fetchval("SELECT count(*) FROM rate_limits WHERE bucket = $1", idle)
        return int(n) == 0

    await eventually(purged, timeout=10, interval=0.05)
    assert await pool.fetchval("SELECT tat > now() FROM rate_limits WHERE bucket = $1", busy)
    assert not await pool.fetchval(
        "SELECT count(*) FROM idempotency_keys WHERE client_id = $1", f"client-{unique}"
    )
    async with pool.acquire() as conn:  # a purged bucket is a full one: burst 1 passes once
        assert await admission.acquire_rate(conn, idle, rate_per_s=0.01, burst=1) == 0.0
        assert await admission.acquire_rate(conn, idle, rate_per_s=0.01, burst=1) > 0.0
        assert await admission.acquire_rate(conn, busy, rate_per_s=0.01, burst=1) > 0.0
