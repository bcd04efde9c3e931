"""GET /api/v1/batch-jobs: filter, order, limits and correct pagination totals (§1.6, B24)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
from gen_common.signing import hmac_hex

from tests.status.conftest import KEY, InsertJob

pytestmark = pytest.mark.pg
SIGNED = {"X-Signature": hmac_hex(KEY.encode(), b"")}


async def newest_jobs(insert_job: InsertJob, statuses: list[str]) -> list[uuid.UUID]:
    """Jobs newer than any other row (1000 years ahead), newest first."""
    base = datetime.now(UTC) + timedelta(days=365_000)
    ids = []
    for i, status in enumerate(statuses):
        ids.append(await insert_job(status=status, created_at=base - timedelta(seconds=i)))
    return ids


async def test_pages_and_totals(
    client: httpx.AsyncClient, insert_job: InsertJob, pool: asyncpg.Pool
) -> None:
    statuses = ["failed", "completed", "failed", "pending", "failed", "processing", "completed"]
    ids = await newest_jobs(insert_job, statuses)
    total = await pool.fetchval("SELECT count(*) FROM jobs")
    seen = []
    for offset in (0, 3, 6):
        r = await client.get(f"/api/v1/batch-jobs?limit=3&offset={offset}", headers=SIGNED)
        body = r.json()
        assert body["pagination"] == {"limit": 3, "offset": offset, "total": total}
        seen += [job["job_id"] for job in body["jobs"]]
    assert seen[:7] == [str(i) for i in ids]

    failed_total = await pool.fetchval("SELECT count(*) FROM jobs WHERE status = 'failed'")
    r = await client.get("/api/v1/batch-jobs?status=failed&limit=2", headers=SIGNED)
    body = r.json()
    assert body["pagination"] == {"limit": 2, "offset": 0, "total": failed_total}
    assert [j["job_id"] for j in body["jobs"]] == [str(ids[0]), str(ids[2])]
    assert all(j["status"] == "failed" for j in body["jobs"])

    beyond = await client.get(f"/api/v1/batch-jobs?offset={total + 5}", headers=SIGNED)
    assert beyond.json() == {
        "jobs": [],
        "pagination": {"limit": 10, "offset": total + 5, "total": total},
    }


async def test_item_shape(client: httpx.AsyncClient, insert_job: InsertJob) -> None:
    [job] = await newest_jobs(insert_job, ["processing"])
    item = (await client.get("/api/v1/batch-jobs?limit=1", headers=SIGNED)).json()["jobs"][0]
    assert item["job_id"] == str(job)
    assert set(item) == {
        "job_id",
        "status",
        "created_at",
        "updated_at",
        "languages",
        "webhook_url",
        "total_lots",
        "processed_lots",
        "failed_lots",
        "error_message",
        "openai_batch_id",
        "progress",
    }
    assert item["progress"] == {
        "total_lots": 2,
        "processed_lots": 0,
        "failed_lots": 0,
        "completion_percentage": 0.0,
    }


async def test_limit_defaults_to_10_and_is_capped_at_100(
    client: httpx.AsyncClient, insert_job: InsertJob
) -> None:
    await newest_jobs(insert_job, ["pending"] * 11)
    body = (await client.get("/api/v1/batch-jobs", headers=SIGNED)).json()
    assert (body["pagination"]["limit"], len(body["jobs"])) == (10, 10)
    capped = (await client.get("/api/v1/batch-jobs?limit=1000", headers=SIGNED)).json()
    assert capped["pagination"]["limit"] == 100
    zero = (await client.get("/api/v1/batch-jobs?limit=0", headers=SIGNED)).json()
    assert zero["jobs"] == []
    nul = await client.get("/api/v1/batch-jobs?status=%00", headers=SIGNED)
    assert nul.json()["pagination"]["total"] == 0


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("limit=abc", "Invalid parameter: invalid literal for int() with base 10: 'abc'"),
        ("offset=1.5", "Invalid parameter: invalid literal for int() with base 10: '1.5'"),
        ("limit=-1", "Invalid parameter: limit must not be negative"),
        ("offset=-5", "Invalid parameter: offset must not be negative"),
    ],
)
async def test_bad_parameters_are_400(client: httpx.AsyncClient, query: str, message: str) -> None:
    r = await client.get(f"/api/v1/batch-jobs?{query}", headers=SIGNED)
    assert r.status_code == 400
    assert r.json() == {"error": message}


async def test_huge_offset_is_an_empty_page(client: httpx.AsyncClient) -> None:
    r = await client.get(f"/api/v1/batch-jobs?offset={10**30}", headers=SIGNED)
    assert r.status_code == 200
    assert r.json()["jobs"] == []
