"""Consumer handlers against real PostgreSQL: finalise once, W2 chunks, completion, cancel, v2."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import asyncpg
import pytest
from gen_common.events import Description, JobCancelRequested, LotFailed, LotTranslated
from gen_common.signing import sign_lots
from gen_notifier import handler
from gen_notifier.schedule import ManualClock
from gen_notifier.settings import NotifierOptions

from tests.notifier.conftest import KEY, deliveries_of, deps_for, make_job, options

pytestmark = pytest.mark.pg


def translated(job_id: uuid.UUID, seq: int, **kw: Any) -> LotTranslated:
    return LotTranslated(
        job_id=job_id,
        lot_seq=seq,
        lot_id=f"lot-{seq}",
        descriptions=[
            Description(language="en", damages="<p>Dent.</p>"),
            Description(language="ru", damages="<p>Вмятина.</p>"),
        ],
        **kw,
    )


def failed(job_id: uuid.UUID, seq: int) -> LotFailed:
    return LotFailed(
        job_id=job_id, lot_seq=seq, lot_id=f"lot-{seq}", stage="vision", reason="image_unreachable"
    )


async def feed(pool: asyncpg.Pool, o: NotifierOptions, clock: ManualClock, *events: Any) -> None:
    deps = deps_for(o, clock)
    for event in events:
        async with pool.acquire() as conn, conn.transaction():
            if isinstance(event, LotTranslated):
                await handler.on_translated(event, conn, deps)
            elif isinstance(event, LotFailed):
                await handler.on_failed(event, conn, deps)
            else:
                await handler.on_cancel(event, conn, deps)


async def job_row(pool: asyncpg.Pool, job_id: uuid.UUID) -> asyncpg.Record:
    row = await pool.fetchrow("SELECT * FROM jobs WHERE job_id = $1", job_id)
    assert row is not None
    return row


async def test_lot_finalised_once_and_job_completed(pool: asyncpg.Pool, clock: ManualClock) -> None:
    o = options()
    job_id = await make_job(pool, total=2, webhook_url="http://127.0.0.1:9/done")
    event = translated(job_id, 0)
    await feed(pool, o, clock, event, event, event)  # redelivered twice
    job = await job_row(pool, job_id)
    assert (job["completed_lots"], job["failed_lots"], job["status"]) == (1, 0, "processing")
    assert job["input_tokens"] == 0  # stages account tokens when they store; never again here
    assert await deliveries_of(pool, job_id) == []
    await feed(pool, o, clock, failed(job_id, 1), failed(job_id, 1))
    job = await job_row(pool, job_id)
    assert (job["completed_lots"], job["failed_lots"], job["status"]) == (1, 1, "completed")
    assert float(job["cost_usd"]) == 0.0
    (done,) = await deliveries_of(pool, job_id)
    body = json.loads(bytes(done["body"]))
    assert done["kind"] == "completion"
    assert {k: body[k] for k in ("job_id", "status", "total_lots", "completed_lots")} == {
        "job_id": str(job_id),
        "status": "completed",
        "total_lots": 2,
        "completed_lots": 1,
    }
    assert body["failed_lots"] == 1
    assert body["result_url"] == f"/api/v1/batch-results/{job_id}"
    assert "T" in body["timestamp"]
    assert not body["timestamp"].endswith("Z")


async def test_every_lot_failed_fails_the_job(pool: asyncpg.Pool, clock: ManualClock) -> None:
    job_id = await make_job(pool, total=2, webhook_url="http://127.0.0.1:9/done")
    await feed(pool, options(), clock, failed(job_id, 0), failed(job_id, 1))
    assert (await job_row(pool, job_id))["status"] == "failed"
    (done,) = await deliveries_of(pool, job_id)
    assert json.loads(bytes(done["body"]))["status"] == "failed"


async def test_w2_chunks_per_url(pool: asyncpg.Pool, clock: ManualClock) -> None:
    a, b = "http://127.0.0.1:9/a", "http://127.0.0.1:9/b"
    job_id = await make_job(pool, total=5, lot_webhooks=[a, a, a, b, None])
    o = options(chunk_size=2)
    await feed(pool, o, clock, translated(job_id, 0), failed(job_id, 3))
    rows = await deliveries_of(pool, job_id)  # b's only lot is final; a's chunk is not full
    assert [(r["url"], r["kind"]) for r in rows] == [(b, "lots")]
    await feed(pool, o, clock, translated(job_id, 1, missing_images=["http://x/1.jpg"]))
    rows = await deliveries_of(pool, job_id)
    assert [(r["url"], r["kind"]) for r in rows] == [(b, "lots"), (a, "lots")]
    first = json.loads(bytes(rows[1]["body"]))
    assert first["version"] == "1.0.0"
    assert [lot["lot_id"] for lot in first["lots"]] == ["lot-0", "lot-1"]
    assert first["lots"][1]["missing_images"] == ["http://x/1.jpg"]
    assert "missing_images" not in first["lots"][0]
    assert first["signature"] == sign_lots(KEY.encode(), first["lots"])
    assert [d["language"] for d in first["lots"][0]["descriptions"]] == ["en", "ru"]
    failed_lot = json.loads(bytes(rows[0]["body"]))["lots"][0]
    assert failed_lot["status"] == "failed"
    assert failed_lot["error"]["code"] == "image_unreachable"
    await feed(pool, o, clock, translated(job_id, 2), translated(job_id, 4))
    rows = await deliveries_of(pool, job_id)
    assert len(rows) == 3  # the last lot of a flushed alone; no job webhook, no completion
    last = json.loads(bytes(rows[2]["body"]))
    assert [lot["lot_id"] for lot in last["lots"]] == ["lot-2"]


async def test_cancel_marks_and_sends_cancelled(pool: asyncpg.Pool, clock: ManualClock) -> None:
    url = "http://127.0.0.1:9/lots"
    job_id = await make_job(
        pool, total=3, webhook_url="http://127.0.0.1:9/done", lot_webhooks=[url, url, url]
    )
    o = options(chunk_size=10)
    await feed(pool, o, clock, translated(job_id, 0))
    await feed(pool, o, clock, JobCancelRequested(job_id=job_id))
    await feed(pool, o, clock, JobCancelRequested(job_id=job_id), translated(job_id, 1))
    job = await job_row(pool, job_id)
    assert job["status"] == "cancelled"
    statuses = await pool.fetch(
        "SELECT status FROM lots WHERE job_id = $1 ORDER BY lot_seq", job_id
    )
    assert [r["status"] for r in statuses] == ["completed", "cancelled", "cancelled"]
    rows = await deliveries_of(pool, job_id)
    assert [r["kind"] for r in rows] == ["lots", "completion"]
    assert [lot["lot_id"] for lot in json.loads(bytes(rows[0]["body"]))["lots"]] == ["lot-0"]
    done = json.loads(bytes(rows[1]["body"]))
    assert (done["status"], done["cancelled_lots"]) == ("cancelled", 2)


async def test_v2_job_gets_lot_events(pool: asyncpg.Pool, clock: ManualClock) -> None:
    job_id = await make_job(pool, total=2, webhook_url="http://127.0.0.1:9/v2", api_version=2)
    await feed(pool, options(), clock, translated(job_id, 0), failed(job_id, 1))
    rows = await deliveries_of(pool, job_id)
    assert [r["kind"] for r in rows] == ["lot_event", "lot_event", "completion"]
    bodies = [json.loads(bytes(r["body"])) for r in rows]
    assert [b["type"] for b in bodies] == ["lot.completed", "lot.failed", "job.completed"]
    assert bodies[0]["timestamp"].endswith("Z")
    assert bodies[0]["data"]["lot_id"] == "lot-0"
    assert bodies[2]["data"]["completed_lots"] == 1
    assert len({r["msg_id"] for r in rows}) == 3


async def test_refused_url_is_failed_at_registration(
    pool: asyncpg.Pool, clock: ManualClock
) -> None:
    job_id = await make_job(pool, total=1, webhook_url="http://169.254.169.254/latest")
    await feed(pool, options(), clock, translated(job_id, 0))
    (row,) = await deliveries_of(pool, job_id)
    assert row["status"] == "failed"
    assert "refused" in row["last_error"]


async def test_last_lots_finishing_concurrently_flush_everything(
    pool: asyncpg.Pool, clock: ManualClock
) -> None:
    url = "http://127.0.0.1:9/race"
    o = options(chunk_size=10)
    for _ in range(5):
        job_id = await make_job(pool, total=2, lot_webhooks=[url, url])
        await asyncio.gather(
            feed(pool, o, clock, translated(job_id, 0)), feed(pool, o, clock, translated(job_id, 1))
        )
        rows = await deliveries_of(pool, job_id)
        sent = [lot["lot_id"] for r in rows for lot in json.loads(bytes(r["body"]))["lots"]]
        assert sorted(sent) == ["lot-0", "lot-1"]
        left = await pool.fetchval(
            "SELECT count(*) FROM notifier_chunk_lots WHERE job_id = $1", job_id
        )
        assert left == 0


APPEND = """INSERT INTO job_usage (job_id, input_tokens, cached_tokens, output_tokens,
                                   reasoning_tokens, cost_usd)"""


async def _append_usage(pool: asyncpg.Pool, job_id: uuid.UUID, n: int) -> None:
    await pool.executemany(APPEND + " VALUES ($1, 100, 0, 10, 0, 0.25)", [(job_id,)] * n)


async def test_finishing_or_cancelling_a_job_folds_its_usage(
    pool: asyncpg.Pool, clock: ManualClock
) -> None:
    """What the stages appended to job_usage is in the job's totals when it ends, without
    waiting for the periodic fold (which this test does not run)."""
    done_id = await make_job(pool, total=2)
    await _append_usage(pool, done_id, 3)
    await feed(pool, options(), clock, translated(done_id, 0))
    assert (await job_row(pool, done_id))["input_tokens"] == 0  # not finished: not folded yet
    await feed(pool, options(), clock, failed(done_id, 1))
    job = await job_row(pool, done_id)
    assert (job["status"], job["input_tokens"], float(job["cost_usd"])) == ("completed", 300, 0.75)

    cancelled_id = await make_job(pool, total=2)
    await _append_usage(pool, cancelled_id, 2)
    await feed(pool, options(), clock, JobCancelRequested(job_id=cancelled_id))
    job = await job_row(pool, cancelled_id)
    assert (job["status"], job["output_tokens"]) == ("cancelled", 20)
    left = await pool.fetchval(
        "SELECT count(*) FROM job_usage WHERE job_id = ANY($1::uuid[])", [done_id, cancelled_id]
    )
    assert left == 0
