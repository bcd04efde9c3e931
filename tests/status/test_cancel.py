"""POST /api/v1/batch-jobs/{id}/cancel: the conditional transition and the event on Kafka (§1.7)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import uuid
from typing import Any

import asyncpg
import httpx
import pytest
from gen_common import kafka
from gen_common.events import JOBS_CONTROL, Event, JobCancelRequested
from gen_common.settings import KafkaSettings
from gen_common.signing import hmac_hex

from tests.status.conftest import KEY, InsertJob

pytestmark = [pytest.mark.pg, pytest.mark.kafka]
H1 = {"X-Signature": hmac_hex(KEY.encode(), b"{}")}


@pytest.mark.parametrize("status", ["pending", "processing"])
async def test_cancel_marks_the_job_and_publishes_the_event(
    client: httpx.AsyncClient,
    insert_job: InsertJob,
    pool: asyncpg.Pool,
    kafka_settings: KafkaSettings,
    status: str,
) -> None:
    await kafka.ensure_topics(kafka_settings, [JOBS_CONTROL])
    received: asyncio.Queue[Event] = asyncio.Queue()
    started = asyncio.Event()
    reader = asyncio.create_task(
        kafka.tail(
            kafka_settings,
            topics=[JOBS_CONTROL],
            models={JOBS_CONTROL: JobCancelRequested},
            callback=received.put_nowait,
            started=started,
        )
    )
    try:
        await asyncio.wait_for(started.wait(), 30)
        job = await insert_job(status=status)
        r = await client.post(f"/api/v1/batch-jobs/{job}/cancel", content=b"{}", headers=H1)
        assert r.status_code == 200
        expected = {"job_id": str(job), "message": "Job successfully cancelled"}
        expected["status"] = "cancelled"
        assert r.content == json.dumps(expected, separators=(",", ":")).encode() + b"\n"
        event = await asyncio.wait_for(received.get(), 30)
        assert isinstance(event, JobCancelRequested)
        assert event.job_id == job
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    row = await pool.fetchrow(
        "SELECT status, error_message, cancelled_at FROM jobs WHERE job_id = $1", job
    )
    assert row is not None
    assert row["status"] == "cancelled"
    assert row["error_message"] == "Job cancelled by user request"
    assert row["cancelled_at"] is not None
    poll = await client.get(f"/api/v1/batch-status/{job}")
    assert poll.json()["status"] == "cancelled"
    again = await client.post(f"/api/v1/batch-jobs/{job}/cancel", content=b"{}", headers=H1)
    assert again.status_code == 400


@pytest.mark.parametrize("status", ["completed", "failed", "cancelled"])
async def test_finished_jobs_cannot_be_cancelled(
    client: httpx.AsyncClient, insert_job: InsertJob, pool: asyncpg.Pool, status: str
) -> None:
    job = await insert_job(status=status)
    r = await client.post(f"/api/v1/batch-jobs/{job}/cancel", content=b"{}", headers=H1)
    assert r.status_code == 400
    assert r.json() == {
        "error": "Job cannot be cancelled",
        "message": "Only pending, processing, or translating jobs can be cancelled. "
        f"Current status: {status}",
        "status": status,
    }
    assert await pool.fetchval("SELECT status FROM jobs WHERE job_id = $1", job) == status


async def test_cancel_accepts_the_documented_empty_body_form(
    client: httpx.AsyncClient, insert_job: InsertJob
) -> None:
    job = await insert_job()
    r = await client.post(
        f"/api/v1/batch-jobs/{job}/cancel",
        headers={"X-Signature": "sha256=" + hmac_hex(KEY.encode(), str(job).encode())},
    )
    assert r.status_code == 200
    unknown = await client.post(
        f"/api/v1/batch-jobs/{uuid.uuid4()}/cancel", headers=H1, content=b"{}"
    )
    assert unknown.status_code == 404


async def test_a_failed_publish_leaves_the_job_untouched(
    status_settings: Any, insert_job: InsertJob, pool: asyncpg.Pool, kafka_settings: KafkaSettings
) -> None:
    from gen_status.app import create_app

    app = create_app(status_settings(cancel_publish_timeout_s=1.0))
    async with app.router.lifespan_context(app):
        async with kafka.open_publisher(kafka_settings) as stopped:
            pass  # leaving the block stops its producer: every publish now fails
        app.state.deps = dataclasses.replace(app.state.deps, publisher=stopped)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://s") as c:
            job = await insert_job(status="processing")
            r = await c.post(f"/api/v1/batch-jobs/{job}/cancel", content=b"{}", headers=H1)
    assert r.status_code in (500, 503)
    assert r.json() == {"error": "Failed to cancel job"}
    row = await pool.fetchrow("SELECT status, cancelled_at FROM jobs WHERE job_id = $1", job)
    assert row is not None
    assert (row["status"], row["cancelled_at"]) == ("processing", None)
