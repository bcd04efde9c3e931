"""Realtime workers against real PostgreSQL, the OpenAI simulator and a real image host."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest
from gen_common import job_usage
from gen_common.breaker import BreakerSettings, State
from gen_common.events import JobCancelRequested
from gen_vision import handler, worker
from openai_sim.process import RunningSim

from tests.harness.processes import eventually

from .conftest import ImageHost, Stack
from .lots import lot, outbox_events, settled, submit, work_rows

pytestmark = pytest.mark.pg


@contextlib.asynccontextmanager
async def workers(stack: Stack) -> AsyncIterator[None]:
    task = asyncio.create_task(worker.run(stack.deps, worker.claimer_of(stack.deps)))
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def calls_of(sim: RunningSim, job: uuid.UUID) -> list[dict[str, Any]]:
    return [c for c in sim.admin.calls() if (c.get("metadata") or {}).get("job_id") == str(job)]


async def run_job(
    pool: asyncpg.Pool,
    stack: Stack,
    events: list[Any],
    *,
    timeout: float = 30,
    job_id: uuid.UUID | None = None,
) -> None:
    await submit(pool, events, stack.deps.options)
    job = job_id or events[0].job_id
    async with workers(stack):
        await eventually(lambda: settled(pool, job), timeout=timeout, interval=0.1)


async def test_lots_assessed_with_every_valid_image_and_missing_ones_recorded(
    pool: asyncpg.Pool, sim: RunningSim, image_host: ImageHost, make_deps: Callable[..., Any]
) -> None:
    stack: Stack = await make_deps()
    job = uuid.uuid4()
    ok = [image_host.url(f"img/{job}/{i}.jpg") for i in range(4)]
    missing = image_host.url("missing/x.jpg")
    broken = image_host.url("broken/y.jpg")  # fine for us, a download error for "OpenAI"
    images = {0: ok, 1: [*ok[:3], missing], 2: [*ok, broken]}
    events = [lot(job, s, urls, total=3, info="<b>keys</b> missing") for s, urls in images.items()]
    await run_job(pool, stack, events)

    assessed = {e["lot_seq"]: e for e in await outbox_events(pool, job)}
    assert sorted(assessed) == [0, 1, 2]
    assert all(e["type"] == "lot.assessed" for e in assessed.values())
    assert assessed[0]["missing_images"] == []
    assert assessed[1]["missing_images"] == [missing]
    assert assessed[2]["missing_images"] == [broken]
    for e in assessed.values():
        assert e["description_en"].startswith("<p>")
        assert e["usage"]["input_tokens"] > 0
        assert e["usage"]["cost_usd"] > 0
        assert e["languages"] == ["en", "de"]

    calls = calls_of(sim, job)
    final = {int(c["metadata"]["lot_seq"]): c for c in calls if c["status"] == 200}
    assert final[0]["image_urls"] == ok
    assert final[1]["image_urls"] == ok[:3]
    assert final[2]["image_urls"] == ok
    failed = [c for c in calls if c["status"] == 400]
    assert [c["image_urls"] for c in failed] == [[*ok, broken]]
    assert (
        await pool.fetchval("SELECT count(*) FROM vision_calls WHERE job_id = $1", job)
        == len(calls)
        == 4
    )

    rows = await pool.fetch(
        """SELECT l.status, l.missing_images, l.input_tokens, l.cost_usd, r.assessment, r.html
           FROM lots l JOIN vision_results r USING (job_id, lot_seq)
           WHERE l.job_id = $1 ORDER BY l.lot_seq""",
        job,
    )
    assert [r["status"] for r in rows] == ["assessed"] * 3
    assert rows[2]["missing_images"] == [broken]
    assert rows[0]["assessment"]["image_urls"] == ok
    assert all(i in range(4) for d in rows[0]["assessment"]["damages"] for i in d["image_indexes"])
    async with pool.acquire() as conn:  # as the notifier does: usage rows -> the job's totals
        await job_usage.fold(conn, job)
    job_row = await pool.fetchrow("SELECT input_tokens, cost_usd FROM jobs WHERE job_id = $1", job)
    assert job_row is not None
    assert job_row["input_tokens"] == sum(r["input_tokens"] for r in rows)
    assert job_row["cost_usd"] == sum(r["cost_usd"] for r in rows)
    assert [r["status"] for r in await work_rows(pool, job)] == ["done"] * 3


async def test_too_many_unreachable_images_fail_without_a_model_call(
    pool: asyncpg.Pool, sim: RunningSim, image_host: ImageHost, make_deps: Callable[..., Any]
) -> None:
    stack: Stack = await make_deps()
    job = uuid.uuid4()
    urls = [image_host.url("img/a.jpg"), image_host.url("missing/b.jpg"), "ftp://x/c.jpg"]
    await run_job(pool, stack, [lot(job, 0, urls)])
    [event] = await outbox_events(pool, job)
    assert event["type"] == "lot.failed"
    assert (event["stage"], event["reason"]) == ("vision", "image_unreachable")
    assert event["missing_images"] == urls[1:]
    assert calls_of(sim, job) == []
    assert await pool.fetchval("SELECT missing_images FROM lots WHERE job_id = $1", job) == urls[1:]


async def test_refusals_are_retried_a_bounded_number_of_times(
    pool: asyncpg.Pool, sim: RunningSim, image_host: ImageHost, make_deps: Callable[..., Any]
) -> None:
    stack: Stack = await make_deps(invalid_output_attempts=3)
    job = uuid.uuid4()
    await run_job(pool, stack, [lot(job, 0, [image_host.url("img/a.jpg")], info="[[refuse]]")])
    [event] = await outbox_events(pool, job)
    assert (event["type"], event["reason"]) == ("lot.failed", "invalid_model_output")
    assert len(calls_of(sim, job)) == 3
    [row] = await work_rows(pool, job)
    assert (row["status"], row["invalid_outputs"], row["model_calls"]) == ("failed", 2, 3)


async def test_429_storm_no_lot_fails_and_breaker_stays_closed(
    pool: asyncpg.Pool, sim: RunningSim, image_host: ImageHost, make_deps: Callable[..., Any]
) -> None:
    """O1, compressed: 3 s of 429 (retry-after-ms 300) while 12 lots are worked on."""
    stack: Stack = await make_deps(
        breaker=BreakerSettings(window=10, minimum_calls=5, open_s=0.5, max_open_s=2),
        max_attempts=3,
    )
    job = uuid.uuid4()
    events = [lot(job, i, [image_host.url(f"img/{i}.jpg")], total=12) for i in range(12)]
    sim.admin.config({"storm": {"kind": "429", "duration_s": 3, "retry_after_ms": 300}})
    await run_job(pool, stack, events)
    outcomes = [e["type"] for e in await outbox_events(pool, job)]
    assert outcomes == ["lot.assessed"] * 12
    assert stack.deps.breaker.trips == 0
    assert stack.deps.breaker.state is State.CLOSED
    assert stack.throttle.rate_limited > 0
    assert sum(c["status"] == 429 for c in calls_of(sim, job)) > 0


async def test_503_outage_opens_the_breaker_no_calls_while_open_all_lots_complete(
    pool: asyncpg.Pool, sim: RunningSim, image_host: ImageHost, make_deps: Callable[..., Any]
) -> None:
    """O2, compressed: 4 s of 503; window 10 / min 5 calls, open 1 s doubling to 2 s."""
    stack: Stack = await make_deps(
        breaker=BreakerSettings(window=10, minimum_calls=5, open_s=1, max_open_s=2),
        max_attempts=10,
    )
    breaker = stack.deps.breaker
    job = uuid.uuid4()
    events = [lot(job, i, [image_host.url(f"img/{i}.jpg")], total=20) for i in range(20)]
    sim.admin.config({"storm": {"kind": "503", "duration_s": 4}})
    violations: list[tuple[int, int]] = []

    async def watch() -> None:
        """Within an open episode, once calls started before the trip had 0.3 s to arrive,
        the simulator must see no call until the breaker lets probes through."""
        tripped_at: dict[int, float] = {}
        loop = asyncio.get_running_loop()
        while True:
            if breaker.state is State.OPEN:
                trips = breaker.trips
                since = loop.time() - tripped_at.setdefault(trips, loop.time())
                if since >= 0.3 and breaker.open_for() > 0.2:
                    before = sim.admin.stats()["totals"]["calls"]
                    await asyncio.sleep(breaker.open_for() - 0.1)
                    after = sim.admin.stats()["totals"]["calls"]
                    if breaker.trips == trips and breaker.state is State.OPEN and after != before:
                        violations.append((before, after))
            await asyncio.sleep(0.02)

    watcher = asyncio.create_task(watch())
    try:
        await run_job(pool, stack, events, timeout=60)
    finally:
        watcher.cancel()
    outcomes = [e["type"] for e in await outbox_events(pool, job)]
    assert outcomes == ["lot.assessed"] * 20
    assert breaker.trips >= 1
    assert violations == []
    assert breaker.state is State.CLOSED
    attempts = [r["attempts"] for r in await work_rows(pool, job)]
    assert max(attempts) <= 10
    errors = sum(c["status"] == 503 for c in calls_of(sim, job))
    assert 5 <= errors < 60  # the breaker cut the storm short instead of 20 lots x 10 attempts


async def test_incomplete_answers_fail_as_invalid_model_output(
    pool: asyncpg.Pool, sim: RunningSim, image_host: ImageHost, make_deps: Callable[..., Any]
) -> None:
    stack: Stack = await make_deps(max_output_tokens=16, invalid_output_attempts=2)
    job = uuid.uuid4()
    await run_job(pool, stack, [lot(job, 0, [image_host.url("img/a.jpg")])])
    [event] = await outbox_events(pool, job)
    assert (event["type"], event["reason"]) == ("lot.failed", "invalid_model_output")
    outcomes = await pool.fetch(
        "SELECT outcome FROM vision_calls WHERE job_id = $1 ORDER BY id", job
    )
    assert [r["outcome"] for r in outcomes] == ["invalid_model_output"] * 2


async def test_lease_is_renewed_during_a_call_longer_than_the_lease(
    pool: asyncpg.Pool, sim: RunningSim, image_host: ImageHost, make_deps: Callable[..., Any]
) -> None:
    """Call 2.5 s, lease 0.9 s, reaper every 0.2 s: without renewal the lot would be reclaimed
    and called twice."""
    stack: Stack = await make_deps(lease_s=0.9, reap_interval_s=0.2, workers=2)
    sim.admin.config({"latency": {"kinds": {"vision": {"dist": "fixed", "ms": 2500}}}})
    job = uuid.uuid4()
    await submit(pool, [lot(job, 0, [image_host.url("img/a.jpg")])], stack.deps.options)
    reaper = asyncio.create_task(worker.reaper(pool, stack.deps.options))
    try:
        await run_job(pool, stack, [], job_id=job)
    finally:
        reaper.cancel()
        await asyncio.gather(reaper, return_exceptions=True)
    assert len(calls_of(sim, job)) == 1
    [row] = await work_rows(pool, job)
    assert (row["status"], row["attempts"], row["model_calls"]) == ("done", 1, 1)


async def test_a_lot_cancelled_after_queueing_makes_no_call_and_no_event(
    pool: asyncpg.Pool, sim: RunningSim, image_host: ImageHost, make_deps: Callable[..., Any]
) -> None:
    stack: Stack = await make_deps()
    job = uuid.uuid4()
    await submit(pool, [lot(job, 0, [image_host.url("img/a.jpg")])], stack.deps.options)
    await pool.execute("UPDATE lots SET status = 'cancelled' WHERE job_id = $1", job)
    await run_job(pool, stack, [], job_id=job)
    assert await outbox_events(pool, job) == []
    assert calls_of(sim, job) == []
    assert await pool.fetchval("SELECT count(*) FROM vision_results WHERE job_id = $1", job) == 0
    [row] = await work_rows(pool, job)
    assert (row["status"], row["model_calls"], row["last_error"]) == ("cancelled", 0, "cancelled")
    assert await pool.fetchval("SELECT status FROM lots WHERE job_id = $1", job) == "cancelled"


async def test_a_lot_of_a_job_ingest_aborted_makes_no_call(
    pool: asyncpg.Pool, sim: RunningSim, image_host: ImageHost, make_deps: Callable[..., Any]
) -> None:
    """Kafka acknowledged some of a job's lots and vision queued them, then ingest hit its publish
    deadline and aborted the job (jobs row deleted, lots with it): the queued work is dropped."""
    stack: Stack = await make_deps()
    job = uuid.uuid4()
    await submit(pool, [lot(job, 0, [image_host.url("img/a.jpg")])], stack.deps.options)
    async with pool.acquire() as conn, conn.transaction():  # what ingest's store.abort_job does
        await conn.execute("INSERT INTO aborted_jobs (job_id, reason) VALUES ($1, 'test')", job)
        await conn.execute("DELETE FROM jobs WHERE job_id = $1", job)
    await run_job(pool, stack, [], job_id=job)
    assert calls_of(sim, job) == []
    assert await outbox_events(pool, job) == []
    [row] = await work_rows(pool, job)
    assert (row["status"], row["model_calls"]) == ("cancelled", 0)


async def test_a_cancel_between_claim_and_call_stops_the_model_call(
    pool: asyncpg.Pool, sim: RunningSim, image_host: ImageHost, make_deps: Callable[..., Any]
) -> None:
    """The job is cancelled (jobs row, then JobCancelRequested's handler) while the claimed lot's
    images are being checked: the worker must not start the model call."""
    stack: Stack = await make_deps(workers=1)
    job = uuid.uuid4()
    real = stack.deps.checker
    cancelled = asyncio.Event()

    class CancelDuringCheck:
        async def check_lot(self, urls: list[str]) -> Any:
            check = await real.check_lot(urls)
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("UPDATE jobs SET status = 'cancelled' WHERE job_id = $1", job)
                await handler.on_cancel(JobCancelRequested(job_id=job), conn)
            cancelled.set()
            return check

    stack.deps = dataclasses.replace(stack.deps, checker=CancelDuringCheck())
    await run_job(pool, stack, [lot(job, 0, [image_host.url("img/a.jpg")])])
    assert cancelled.is_set()
    assert calls_of(sim, job) == []
    assert await outbox_events(pool, job) == []
    [row] = await work_rows(pool, job)
    assert (row["status"], row["model_calls"]) == ("cancelled", 0)
    assert await pool.fetchval("SELECT count(*) FROM vision_calls WHERE job_id = $1", job) == 0
