"""v2's one-statement admission (admission.admit): nonce, rate slot and jobs row decided together.

Whatever the order of checks answers, a replayed, rate-limited or invalid request never leaves a
jobs row behind, and a nonce is spent by every authenticated request — real PostgreSQL.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import orjson
import pytest
from gen_common import request_auth
from gen_ingest import admission

from tests.ingest.conftest import Ingest

pytestmark = [pytest.mark.pg, pytest.mark.kafka]


def one_lot() -> dict[str, Any]:
    return {
        "lots": [{"lot_id": "A-1", "images": [f"https://img.example/{uuid.uuid4()}.jpg"]}],
        "languages": ["en", "de"],
    }


def new_job() -> admission.NewJob:
    return admission.NewJob(uuid.uuid4(), "realtime", ["en", "de"], 1, None)


async def jobs_of(pool: asyncpg.Pool, client_id: str) -> int:
    count: int = await pool.fetchval("SELECT count(*) FROM jobs WHERE client_id = $1", client_id)
    return count


async def client(pool: asyncpg.Pool, unique: str, *, rate: float, burst: int) -> str:
    client_id = f"adm-{unique}"
    async with pool.acquire() as conn:
        await request_auth.create_client(conn, client_id, rate_per_s=rate, rate_burst=burst)
    return client_id


async def admit(
    pool: asyncpg.Pool, client_id: str, nonce: str, job: admission.NewJob | None
) -> Any:
    async with pool.acquire() as conn:
        return await admission.admit(
            conn,
            client_id=client_id,
            nonce=nonce,
            bucket=f"v2:{client_id}",
            rate_per_s=50.0,
            burst=100,
            api_version=2,
            job=job,
        )


async def test_a_fresh_nonce_within_the_rate_inserts_the_job(
    migrated: str, pool: asyncpg.Pool, unique: str
) -> None:
    client_id = await client(pool, unique, rate=100.0, burst=10)
    job = new_job()
    admitted = await admit(pool, client_id, "n" * 16 + unique, job)
    assert admitted.fresh_nonce
    assert admitted.wait_s == 0.0
    assert admitted.created_at is not None
    row = await pool.fetchrow("SELECT * FROM jobs WHERE job_id = $1", job.job_id)
    assert row is not None
    assert (row["client_id"], row["api_version"], row["mode"], row["total_lots"]) == (
        client_id,
        2,
        "realtime",
        1,
    )
    assert list(row["languages"]) == ["en", "de"]


async def test_a_replayed_nonce_inserts_nothing_and_takes_no_slot(
    migrated: str, pool: asyncpg.Pool, unique: str
) -> None:
    client_id = await client(pool, unique, rate=0.01, burst=1)
    nonce = "r" * 16 + unique
    assert (await admit(pool, client_id, nonce, None)).fresh_nonce
    replay = await admit(pool, client_id, nonce, new_job())
    assert not replay.fresh_nonce
    assert replay.created_at is None
    assert await jobs_of(pool, client_id) == 0
    # The burst of one was spent by the first request only: the next fresh nonce is limited.
    limited = await admit(pool, client_id, "s" * 16 + unique, new_job())
    assert limited.fresh_nonce
    assert limited.wait_s > 0
    assert limited.created_at is None
    assert await jobs_of(pool, client_id) == 0


async def test_without_a_job_only_the_nonce_and_the_slot_are_taken(
    migrated: str, pool: asyncpg.Pool, unique: str
) -> None:
    client_id = await client(pool, unique, rate=100.0, burst=5)
    admitted = await admit(pool, client_id, "j" * 16 + unique, None)
    assert admitted.fresh_nonce
    assert admitted.wait_s == 0.0
    assert admitted.created_at is None
    assert await jobs_of(pool, client_id) == 0


async def test_invalid_and_replayed_requests_leave_no_job(
    ingest: Ingest, pool: asyncpg.Pool
) -> None:
    bad = orjson.dumps({"lots": [], "languages": ["en"]})
    headers = {"Content-Type": "application/json"} | ingest.signed(bad)
    first = await ingest.client.post("/api/v2/jobs", content=bad, headers=headers)
    assert first.status_code == 422
    replay = await ingest.client.post("/api/v2/jobs", content=bad, headers=headers)
    assert replay.status_code == 401  # the 422 request spent its nonce
    good = orjson.dumps(one_lot())
    headers = {"Content-Type": "application/json"} | ingest.signed(good)
    created = await ingest.client.post("/api/v2/jobs", content=good, headers=headers)
    assert created.status_code == 201
    again = await ingest.client.post("/api/v2/jobs", content=good, headers=headers)
    assert again.status_code == 401
    assert await jobs_of(pool, ingest.client_id) == 1


async def test_a_rate_limited_request_leaves_no_job(ingest: Ingest, pool: asyncpg.Pool) -> None:
    await pool.execute(
        "UPDATE api_clients SET rate_per_s = 0.01, rate_burst = 1 WHERE client_id = $1",
        ingest.client_id,
    )
    assert (await ingest.v2(one_lot())).status_code == 201
    limited = await ingest.v2(one_lot())
    assert limited.status_code == 429
    assert await jobs_of(pool, ingest.client_id) == 1
