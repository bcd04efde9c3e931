"""Workers against real PostgreSQL and the simulator: translations, sync budget, 429s, 503s."""

from __future__ import annotations

import time
import uuid
from typing import Any

import asyncpg
import pytest
from gen_common.breaker import Breaker, BreakerSettings, State
from gen_common.events import JobCancelRequested, LotAssessed
from gen_common.ratelimits import Throttle, ThrottleSettings
from gen_translate import batch_path, finish, handler
from gen_translate.describe import Describer, Translation
from openai_sim.process import RunningSim

from tests.harness.processes import eventually

from .conftest import (
    DESCRIPTION_EN,
    assessed,
    create_job,
    emitted,
    running_workers,
    wait_translated,
)

pytestmark = pytest.mark.pg
DEPS = handler.Deps(sync_budget_s=45.0)


async def deliver(pool: asyncpg.Pool, *events: LotAssessed, deps: handler.Deps = DEPS) -> None:
    async with pool.acquire() as conn, conn.transaction():
        for event in events:
            await handler.on_assessed(event, conn, deps)


async def failed_outcomes(pool: asyncpg.Pool, job_id: uuid.UUID) -> int:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM translate_results WHERE job_id = $1 AND outcome <> 'translated'",
        job_id,
    )
    return count


async def test_every_language_translated_en_first(pool: asyncpg.Pool, sim: RunningSim) -> None:
    languages = ["en", "ru", "de", "ru", "fr"]
    job_id = await create_job(pool, 5)
    async with running_workers(pool, sim):
        await deliver(pool, *[assessed(job_id, seq, languages=languages) for seq in range(5)])
        await wait_translated(pool, job_id, 5, timeout=30)
    events = await emitted(pool, job_id)
    assert sorted(e.lot_seq for e in events) == list(range(5))
    for event in events:
        assert [(d.language, d.damages) for d in event.descriptions] == [
            ("en", DESCRIPTION_EN),
            ("ru", f"[ru] {DESCRIPTION_EN}"),
            ("de", f"[de] {DESCRIPTION_EN}"),
            ("ru", f"[ru] {DESCRIPTION_EN}"),
            ("fr", f"[fr] {DESCRIPTION_EN}"),
        ]
        assert event.pending_languages == []
        assert event.usage.output_tokens > 0
    assert sim.admin.stats()["totals"]["calls"] == 5 * 3  # duplicates translated once
    lot = await pool.fetchrow("SELECT * FROM lots WHERE job_id = $1 AND lot_seq = 0", job_id)
    assert lot is not None
    assert lot["status"] == "translating"
    assert float(lot["cost_usd"]) > 0


@pytest.mark.parametrize("languages", [["en", "ru"], ["ru", "RU", "en"], ["ru", "de"]])
async def test_the_event_says_what_the_stored_results_say(
    pool: asyncpg.Pool, sim: RunningSim, languages: list[str]
) -> None:
    """A lot with one language builds its LotTranslated from the outcome it has just written
    (no read back); the event must be the one its stored rows would give."""
    job_id = await create_job(pool, 1)
    async with running_workers(pool, sim):
        await deliver(pool, assessed(job_id, 0, languages=languages))
        await wait_translated(pool, job_id, 1, timeout=30)
    [event] = await emitted(pool, job_id)
    lot = await pool.fetchrow("SELECT * FROM translate_lots WHERE job_id = $1", job_id)
    stored = await pool.fetch("SELECT * FROM translate_results WHERE job_id = $1", job_id)
    assert lot is not None
    assert event == finish.build_event(lot, stored).model_copy(
        update={"event_id": event.event_id, "occurred_at": event.occurred_at}
    )
    assert event.usage.output_tokens > 0


async def test_sync_budget_lists_pending_languages(pool: asyncpg.Pool, sim: RunningSim) -> None:
    """Every text call takes 3 s, the budget is 1 s: the lot completes with en only, on time."""
    sim.admin.config({"latency": {"kinds": {"text": {"dist": "fixed", "ms": 3000}}}})
    job_id = await create_job(pool, 1, mode="sync")
    started = time.monotonic()
    async with running_workers(pool, sim, workers=1) as breaker:
        await deliver(
            pool,
            assessed(job_id, languages=["ja", "ko", "en", "de"], mode="sync"),
            deps=handler.Deps(sync_budget_s=1.0),
        )
        await wait_translated(pool, job_id, 1, timeout=10)
    took = time.monotonic() - started
    assert breaker.snapshot()["failures"] == 0, "our own budget is no upstream failure"
    [event] = await emitted(pool, job_id)
    assert [d.language for d in event.descriptions] == ["en"]
    assert event.descriptions[0].damages == DESCRIPTION_EN  # never English under another code
    assert event.pending_languages == ["ja", "ko", "de"]
    assert event.warnings == [finish.TIME_LIMIT]
    assert took < 2.9, f"the lot waited for the slow calls ({took:.1f}s)"


async def test_sync_budget_keeps_what_finished_in_time(pool: asyncpg.Pool, sim: RunningSim) -> None:
    job_id = await create_job(pool, 1, mode="sync")
    async with running_workers(pool, sim, workers=2):
        await deliver(
            pool,
            assessed(job_id, languages=["ru", "de"], mode="sync"),
            deps=handler.Deps(sync_budget_s=10.0),
        )
        await wait_translated(pool, job_id, 1, timeout=10)
    [event] = await emitted(pool, job_id)
    assert [d.language for d in event.descriptions] == ["en", "ru", "de"]
    assert event.pending_languages == []
    assert event.warnings == []


async def test_permanent_failure_is_pending_with_a_warning(
    pool: asyncpg.Pool, sim: RunningSim
) -> None:
    job_id = await create_job(pool, 1)
    async with running_workers(pool, sim):
        await deliver(pool, assessed(job_id, languages=["ru"], description_en="<p>[[refuse]]</p>"))
        await wait_translated(pool, job_id, 1, timeout=10)
    [event] = await emitted(pool, job_id)
    assert [d.language for d in event.descriptions] == ["en"]
    assert event.pending_languages == ["ru"]
    assert event.warnings == [finish.FAILED]
    assert sim.admin.stats()["totals"]["calls"] == 1  # not retried


async def test_breaker_stays_closed_under_429s(pool: asyncpg.Pool, sim: RunningSim) -> None:
    breaker = Breaker(BreakerSettings(minimum_calls=5, window=10, open_s=60))
    sim.admin.config({"storm": {"kind": "429", "duration_s": 2.0, "retry_after_ms": 100}})
    job_id = await create_job(pool, 6)
    async with running_workers(pool, sim, breaker=breaker, max_attempts=2):
        await deliver(pool, *[assessed(job_id, seq, languages=["ru", "de"]) for seq in range(6)])
        await wait_translated(pool, job_id, 6, timeout=30)
    stats = sim.admin.stats()
    assert stats["totals"]["errors"] >= 10  # the storm was really hit, many times per row
    assert breaker.trips == 0
    assert breaker.state is State.CLOSED
    assert await failed_outcomes(pool, job_id) == 0
    assert len(await emitted(pool, job_id)) == 6


async def test_503s_open_the_breaker_and_every_lot_completes(
    pool: asyncpg.Pool, sim: RunningSim
) -> None:
    breaker = Breaker(BreakerSettings(minimum_calls=4, window=8, open_s=0.5, half_open_calls=1))
    sim.admin.config({"storm": {"kind": "503", "duration_s": 2.0}})
    job_id = await create_job(pool, 6)
    async with running_workers(pool, sim, breaker=breaker, max_attempts=50, retry_max_s=0.3):
        await deliver(pool, *[assessed(job_id, seq, languages=["ru"]) for seq in range(6)])
        await wait_translated(pool, job_id, 6, timeout=30)
    assert breaker.trips >= 1
    assert breaker.rejected > 0
    assert await failed_outcomes(pool, job_id) == 0
    assert len(await emitted(pool, job_id)) == 6


async def test_batch_path_rows_are_left_to_the_batch_engine(
    pool: asyncpg.Pool, sim: RunningSim
) -> None:
    """With a Batch API threshold, realtime workers take small and non-batch jobs only."""
    big = await create_job(pool, 3, mode="batch")
    small = await create_job(pool, 2, mode="batch")
    async with running_workers(pool, sim, claim_where=batch_path.realtime_where(2)):
        await deliver(pool, *[assessed(big, seq, mode="batch") for seq in range(3)])
        await deliver(pool, *[assessed(small, seq, mode="batch") for seq in range(2)])
        await wait_translated(pool, small, 2, timeout=10)
    assert len(await emitted(pool, small)) == 2
    assert await emitted(pool, big) == []
    statuses = await pool.fetch("SELECT status FROM translate_work WHERE job_id = $1", big)
    assert [r["status"] for r in statuses] == ["queued"] * 3


async def test_work_of_a_cancelled_lot_is_dropped_without_a_call(
    pool: asyncpg.Pool, sim: RunningSim
) -> None:
    """A cancel that lands after the work was queued (e.g. while it was being claimed)."""
    job_id = await create_job(pool, 1)

    async def settled() -> bool:
        left = await pool.fetchval(
            "SELECT count(*) FROM translate_work WHERE job_id = $1 AND status <> 'failed'", job_id
        )
        return bool(left == 0)

    async with running_workers(pool, sim):
        async with pool.acquire() as conn, conn.transaction():
            await handler.on_assessed(assessed(job_id, languages=["ru", "de"]), conn, DEPS)
            await conn.execute(
                "UPDATE translate_lots SET cancelled = true WHERE job_id = $1", job_id
            )
        await eventually(settled, timeout=10)
    errors = await pool.fetch("SELECT last_error FROM translate_work WHERE job_id = $1", job_id)
    assert [r["last_error"] for r in errors] == ["cancelled", "cancelled"]
    assert sim.admin.stats()["totals"]["calls"] == 0
    assert await emitted(pool, job_id) == []


class CancelThenCall:
    """A describer that cancels the job (jobs row, then the translate handler) once the worker
    has claimed the lot, optionally pauses the throttle (the worker then waits for its slot),
    and counts the pre-call checks the real describer ran."""

    def __init__(
        self, real: Describer, pool: asyncpg.Pool, job_id: uuid.UUID, pause: Throttle | None
    ) -> None:
        self.real, self.pool, self.job_id, self.pause = real, pool, job_id, pause
        self.calls = 0
        self.checks = 0

    async def translate(self, **kwargs: Any) -> Translation:
        self.calls += 1
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE jobs SET status = 'cancelled' WHERE job_id = $1", self.job_id
            )
            await handler.on_control(JobCancelRequested(job_id=self.job_id), conn)
        if self.pause is not None:
            self.pause.on_rate_limited(0.2)  # the slot is free again in 0.2-0.24 s
        check = kwargs["after_wait"]

        async def counted() -> None:
            self.checks += 1
            await check()

        return await self.real.translate(**(kwargs | {"after_wait": counted}))


async def no_work_left(pool: asyncpg.Pool, job_id: uuid.UUID) -> bool:
    left = await pool.fetchval(
        """SELECT count(*) FROM translate_work
           WHERE job_id = $1 AND status IN ('queued', 'running')""",
        job_id,
    )
    return bool(left == 0)


async def test_a_cancel_while_the_call_waits_for_its_slot_stops_the_model_call(
    pool: asyncpg.Pool, sim: RunningSim
) -> None:
    """JobCancelRequested (and the jobs row) land after the claim, while the worker waits for its
    throttle slot: the claim's check is stale, the pre-call check runs and stops the call; no
    outcome or event is written."""
    job_id = await create_job(pool, 1)
    throttle = Throttle(ThrottleSettings())
    wrappers: list[CancelThenCall] = []

    def cancelling(real: Describer) -> Describer:
        wrappers.append(CancelThenCall(real, pool, job_id, pause=throttle))
        return wrappers[0]

    async with running_workers(pool, sim, workers=1, wrap_describer=cancelling, throttle=throttle):
        await deliver(pool, assessed(job_id, languages=["en", "ru"]))
        await eventually(lambda: no_work_left(pool, job_id), timeout=10)
    assert (wrappers[0].calls, wrappers[0].checks) == (1, 1)
    assert sim.admin.stats()["totals"]["calls"] == 0
    rows = await pool.fetch(
        "SELECT status, last_error FROM translate_work WHERE job_id = $1", job_id
    )
    assert [(r["status"], r["last_error"]) for r in rows] == [("failed", "cancelled")]
    assert (
        await pool.fetchval("SELECT count(*) FROM translate_results WHERE job_id = $1", job_id) == 0
    )
    assert await emitted(pool, job_id) == []


async def test_a_call_that_did_not_wait_runs_no_second_check(
    pool: asyncpg.Pool, sim: RunningSim
) -> None:
    """The claim is the call's one checking statement: with a free slot the call starts at once,
    without the pre-call round trip (a cancel landing in that instant is like one landing during
    the call: the lot emits no event)."""
    job_id = await create_job(pool, 1)
    wrappers: list[CancelThenCall] = []

    def cancelling(real: Describer) -> Describer:
        wrappers.append(CancelThenCall(real, pool, job_id, pause=None))
        return wrappers[0]

    async with running_workers(pool, sim, workers=1, wrap_describer=cancelling):
        await deliver(pool, assessed(job_id, languages=["en", "ru"]))
        await eventually(lambda: no_work_left(pool, job_id), timeout=10)
    assert (wrappers[0].calls, wrappers[0].checks) == (1, 0)
    assert await emitted(pool, job_id) == []


@pytest.mark.parametrize(
    "cancel",
    [
        "UPDATE jobs SET status = 'cancelled' WHERE job_id = $1",
        "UPDATE lots SET status = 'cancelled' WHERE job_id = $1",
        "INSERT INTO translate_cancelled_jobs (job_id) VALUES ($1)",
    ],
    ids=["job", "lot", "control"],
)
async def test_the_claim_of_a_cancelled_lot_makes_no_call(
    pool: asyncpg.Pool, sim: RunningSim, cancel: str
) -> None:
    """Each cancel mark the claim reads (jobs row, lots row, jobs.control) stops the call."""
    job_id = await create_job(pool, 1)
    async with running_workers(pool, sim, workers=1):
        async with pool.acquire() as conn, conn.transaction():
            await handler.on_assessed(assessed(job_id, languages=["ru"]), conn, DEPS)
            await conn.execute(cancel, job_id)
        await eventually(lambda: no_work_left(pool, job_id), timeout=10)
    rows = await pool.fetch(
        "SELECT status, last_error FROM translate_work WHERE job_id = $1", job_id
    )
    assert [(r["status"], r["last_error"]) for r in rows] == [("failed", "cancelled")]
    ours = [c for c in sim.admin.calls() if (c.get("metadata") or {}).get("job_id") == str(job_id)]
    assert ours == []
    assert await emitted(pool, job_id) == []
