"""Consumer handlers and outcome storage against real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg
import pytest
from gen_common import job_usage, jobs
from gen_common.db import Conn
from gen_common.events import JobCancelRequested, LotAssessed, LotTranslated, TokenUsage
from gen_common.outbox_handoff import HOLD_S
from gen_translate import finish, handler, results, store, work_items
from gen_translate.results import Outcome
from gen_translate.store import WORK

from .conftest import DESCRIPTION_EN, assessed, create_job, emitted

pytestmark = pytest.mark.pg
DEPS = handler.Deps(sync_budget_s=45.0)


async def work_rows(pool: asyncpg.Pool, job_id: uuid.UUID) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT * FROM translate_work WHERE job_id = $1 ORDER BY lot_seq, id", job_id
    )


async def deliver(pool: asyncpg.Pool, event: LotAssessed | JobCancelRequested) -> None:
    async with pool.acquire() as conn, conn.transaction():
        if isinstance(event, JobCancelRequested):
            await handler.on_control(event, conn)
        else:
            await handler.on_assessed(event, conn, DEPS)


def done(
    job_id: uuid.UUID,
    language: str,
    lot_seq: int = 0,
    *,
    outcome: str = "translated",
    error_code: str | None = None,
    usage: TokenUsage | None = None,
) -> Outcome:
    text = f"<p>{language} text</p>" if outcome == "translated" else None
    return Outcome(
        job_id,
        lot_seq,
        language,
        outcome,
        text=text,
        error_code=error_code,
        usage=usage or TokenUsage(),
    )


async def lot_row(pool: asyncpg.Pool, job_id: uuid.UUID, table: str = "lots") -> asyncpg.Record:
    row = await pool.fetchrow(f"SELECT * FROM {table} WHERE job_id = $1", job_id)
    assert row is not None
    return row


async def record(pool: asyncpg.Pool, outcome: Outcome) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await finish.record_outcome(conn, outcome)


async def test_assessed_records_one_work_row_per_distinct_language(pool: asyncpg.Pool) -> None:
    job_id = await create_job(pool, 1)
    event = assessed(job_id, languages=["EN", "ru", "de", "ru", "En"], mode="sync")
    await deliver(pool, event)
    await deliver(pool, event)  # redelivery is absorbed
    rows = await work_rows(pool, job_id)
    assert [(r["language"], r["priority"], r["status"]) for r in rows] == [
        ("ru", 10, "queued"),
        ("de", 10, "queued"),
    ]
    assert all(r["deadline_at"] is not None for r in rows)
    lot = await lot_row(pool, job_id, "translate_lots")
    assert lot["languages"] == ["ru", "de", "ru"]
    assert lot["description_en"] == DESCRIPTION_EN
    assert lot["assessment"]["overall_condition"] == "fair"
    status = await pool.fetchval("SELECT status FROM lots WHERE job_id = $1", job_id)
    assert status == "translating"
    assert await emitted(pool, job_id) == []


async def test_priorities_by_mode(pool: asyncpg.Pool) -> None:
    job_id = await create_job(pool, 3)
    for seq, mode in enumerate(["sync", "realtime", "batch"]):
        await deliver(pool, assessed(job_id, seq, mode=mode))
    rows = await work_rows(pool, job_id)
    assert [r["priority"] for r in rows] == [10, 5, 1]
    assert [r["deadline_at"] is None for r in rows] == [False, True, True]


async def test_english_only_lot_is_translated_at_once(pool: asyncpg.Pool) -> None:
    job_id = await create_job(pool, 1)
    await deliver(pool, assessed(job_id, languages=["en"]))
    await deliver(pool, assessed(job_id, languages=["en"]))
    assert await work_rows(pool, job_id) == []
    [event] = await emitted(pool, job_id)
    assert [(d.language, d.damages) for d in event.descriptions] == [("en", DESCRIPTION_EN)]
    assert event.missing_images == ["https://img.example/broken/1.jpg"]
    assert event.pending_languages == []
    lot = await lot_row(pool, job_id)
    assert lot["status"] == "translating"
    assert lot["descriptions"] == [{"language": "en", "damages": DESCRIPTION_EN}]


async def test_last_language_emits_en_first_in_request_order(pool: asyncpg.Pool) -> None:
    job_id = await create_job(pool, 1)
    await deliver(pool, assessed(job_id, languages=["de", "en", "ru", "de"]))
    await record(pool, done(job_id, "ru"))
    assert await emitted(pool, job_id) == []
    await record(pool, done(job_id, "de"))
    await record(pool, done(job_id, "de"))  # a repeated store changes nothing
    [event] = await emitted(pool, job_id)
    assert [d.language for d in event.descriptions] == ["en", "de", "ru", "de"]
    assert event.descriptions[1].damages == "<p>de text</p>"
    lot = await lot_row(pool, job_id)
    assert [d["language"] for d in lot["descriptions"]] == ["en", "de", "ru", "de"]
    assert lot["status"] == "translating"


async def test_usage_is_summed_and_added_to_the_lot_and_the_job(pool: asyncpg.Pool) -> None:
    job_id = await create_job(pool, 1)
    await deliver(pool, assessed(job_id, languages=["ru", "de"]))
    for lang in ("ru", "de"):
        usage = TokenUsage(input_tokens=10, output_tokens=5, cost_usd=0.25)
        await record(pool, done(job_id, lang, usage=usage))
    [event] = await emitted(pool, job_id)
    assert event.usage.input_tokens == 20
    assert event.usage.cost_usd == pytest.approx(0.5)
    lot = await lot_row(pool, job_id)
    assert lot["input_tokens"] == 120  # vision's 100 plus the two translations
    assert float(lot["cost_usd"]) == pytest.approx(0.5)
    async with pool.acquire() as conn:  # as the notifier does: usage rows -> the job's totals
        await job_usage.fold(conn, job_id)
    job = await pool.fetchrow("SELECT input_tokens, cost_usd FROM jobs WHERE job_id = $1", job_id)
    assert job is not None  # the fixture's job row holds no vision usage: only translate's
    assert job["input_tokens"] == 20
    assert float(job["cost_usd"]) == pytest.approx(0.5)


async def test_time_limit_and_failure_become_pending_languages(pool: asyncpg.Pool) -> None:
    job_id = await create_job(pool, 1, mode="sync")
    await deliver(pool, assessed(job_id, languages=["ja", "ru", "ko", "ja"], mode="sync"))
    await record(pool, done(job_id, "ru"))
    await record(pool, done(job_id, "ja", outcome="time_limit"))
    await record(pool, done(job_id, "ko", outcome="failed", error_code="refusal"))
    [event] = await emitted(pool, job_id)
    assert [d.language for d in event.descriptions] == ["en", "ru"]
    assert event.pending_languages == ["ja", "ko"]
    assert event.warnings == [finish.TIME_LIMIT, finish.FAILED]
    lot = await lot_row(pool, job_id)
    assert lot["pending_languages"] == ["ja", "ko"]


async def test_concurrent_last_languages_emit_exactly_once(pool: asyncpg.Pool) -> None:
    """Two transactions store the last two languages; the lock makes the later one emit."""
    job_id = await create_job(pool, 1)
    await deliver(pool, assessed(job_id, languages=["ru", "de"]))
    event = await race(pool, lambda conn, lang: finish.record_outcome(conn, done(job_id, lang)))
    assert event is not None
    assert len(await emitted(pool, job_id)) == 1


async def race(
    pool: asyncpg.Pool, save: Callable[[Conn, str], Coroutine[Any, Any, object]]
) -> object:
    """Two transactions store the last two languages (ru, then de): the first holds the lot's
    lock and emits nothing; the second queues on it and, once the first commits, emits."""
    a, b = await pool.acquire(), await pool.acquire()
    try:
        tx_a, tx_b = a.transaction(), b.transaction()
        await tx_a.start()
        await tx_b.start()
        assert await save(a, "ru") is None  # holds the lot's lock, sees only its own result
        second = asyncio.create_task(save(b, "de"))
        await asyncio.sleep(0.2)
        assert not second.done()  # queued on the lot's row lock
        await tx_a.commit()
        event = await asyncio.wait_for(second, 10)
        await tx_b.commit()
    finally:
        await pool.release(a)
        await pool.release(b)
    return event


async def test_concurrent_workers_last_languages_emit_exactly_once(pool: asyncpg.Pool) -> None:
    """The realtime path: results.settle stores the result and locks the lot in one statement;
    the worker that gets the lock second sees the first one's result and emits."""
    job_id = await create_job(pool, 1)
    await deliver(pool, assessed(job_id, languages=["ru", "de"]))
    owners = {"ru": "worker-a", "de": "worker-b"}
    for language, owner in owners.items():
        async with pool.acquire() as conn:
            await jobs.claim(
                conn,
                WORK,
                owner=owner,
                lease_s=60,
                where=f"job_id = '{job_id}' AND language = '{language}'",
            )
    ids = {r["language"]: r["id"] for r in await work_rows(pool, job_id)}

    async def save(conn: Conn, language: str) -> object:
        locked = await results.settle(
            conn, work_id=ids[language], owner=owners[language], o=done(job_id, language)
        )
        assert locked is not None
        return await finish.complete_if_done(conn, job_id, 0, locked=locked)

    assert await race(pool, save) is not None
    assert len(await emitted(pool, job_id)) == 1
    async with pool.acquire() as conn:  # a lost lease writes nothing and locks nothing
        lost = await results.settle(conn, work_id=ids["ru"], owner="a", o=done(job_id, "ru"))
    assert lost is None


async def test_many_concurrent_finishers_one_event_per_lot(pool: asyncpg.Pool) -> None:
    languages = ["ru", "de", "fr", "es"]
    job_id = await create_job(pool, 10)
    for seq in range(10):
        await deliver(pool, assessed(job_id, seq, languages=languages))
    await asyncio.gather(
        *[record(pool, done(job_id, lang, seq)) for seq in range(10) for lang in languages]
    )
    events = await emitted(pool, job_id)
    assert sorted(e.lot_seq for e in events) == list(range(10))
    assert all([d.language for d in e.descriptions] == ["en", *languages] for e in events)


async def test_cancel_cancels_queued_work_and_later_lots(pool: asyncpg.Pool) -> None:
    job_id = await create_job(pool, 2)
    await deliver(pool, assessed(job_id, 0, languages=["ru", "de"]))
    await deliver(pool, JobCancelRequested(job_id=job_id))
    await deliver(pool, assessed(job_id, 1, languages=["ru"]))
    rows = await work_rows(pool, job_id)
    assert [(r["lot_seq"], r["status"]) for r in rows] == [(0, "cancelled"), (0, "cancelled")]
    await record(pool, done(job_id, "ru"))
    await record(pool, done(job_id, "de"))  # work that was already running: no event
    assert await emitted(pool, job_id) == []


async def claim(
    pool: asyncpg.Pool, job_id: uuid.UUID, owner: str, *, lot_seq: int | None = None
) -> list[asyncpg.Record]:
    """Up to 8 of the job's queued rows (of one lot: ``lot_seq``), as the workers claim them."""
    where = f"job_id = '{job_id}'" + ("" if lot_seq is None else f" AND lot_seq = {lot_seq}")
    async with pool.acquire() as conn:
        return await jobs.claim(
            conn,
            WORK,
            owner=owner,
            lease_s=30,
            limit=8,
            where=where,
            select=store.CLAIM_WITH_SOURCE,
        )


def _translated(row: asyncpg.Record) -> Outcome:
    usage = TokenUsage(input_tokens=7, output_tokens=5, cost_usd=0.25)
    language = row["language"]
    return Outcome(
        row["job_id"], row["lot_seq"], language, "translated", text=f"[{language}] t", usage=usage
    )


async def test_a_lots_only_language_settles_and_completes_in_one_statement(
    pool: asyncpg.Pool,
) -> None:
    job_id = await create_job(pool, 1)
    await deliver(pool, assessed(job_id, languages=["ru", "en"]))
    [row] = await claim(pool, job_id, "w1")
    assert finish.covers_lot(row, [_translated(row)])
    totals = "SELECT input_tokens, output_tokens, cost_usd FROM lots WHERE job_id = $1"
    before = await pool.fetchrow(totals, job_id)
    assert before is not None

    async def settle(owner: str) -> results.Settled:
        async with pool.acquire() as conn:
            return await results.settle_lot(
                conn,
                owner=owner,
                work_ids=[row["id"]],
                outcomes=[_translated(row)],
                done=finish.completion_of(
                    finish.build_event(row, [results.as_stored(_translated(row))])
                ),
            )

    assert await settle("w0") == results.Settled(0, False)  # not the lease holder: nothing
    assert await emitted(pool, job_id) == []
    assert await settle("w1") == results.Settled(1, True)
    assert await settle("w1") == results.Settled(0, False)  # done: a second try writes nothing
    [event] = await emitted(pool, job_id)
    assert [(d.language, d.damages) for d in event.descriptions] == [
        ("en", DESCRIPTION_EN),
        ("ru", "[ru] t"),
    ]
    lot = await pool.fetchrow("SELECT * FROM lots WHERE job_id = $1", job_id)
    assert lot is not None
    assert lot["input_tokens"] - before["input_tokens"] == 7
    assert lot["output_tokens"] - before["output_tokens"] == 5
    assert float(lot["cost_usd"] - before["cost_usd"]) == 0.25
    assert lot["descriptions"] == [d.model_dump(exclude_none=True) for d in event.descriptions]
    assert (event.usage.input_tokens, event.usage.cost_usd) == (7, 0.25)
    shares = await pool.fetch("SELECT input_tokens FROM job_usage WHERE job_id = $1", job_id)
    assert [r["input_tokens"] for r in shares] == [7]


async def test_all_languages_of_a_lot_settle_and_complete_in_one_statement(
    pool: asyncpg.Pool,
) -> None:
    job_id = await create_job(pool, 1)
    await deliver(pool, assessed(job_id, languages=["ru", "en", "de", "ru"]))
    rows = await claim(pool, job_id, "w1")
    assert sorted(r["language"] for r in rows) == ["de", "ru"]
    failed = Outcome(job_id, 0, "de", "failed", error_code="refused")
    outcomes = [_translated(r) if r["language"] == "ru" else failed for r in rows]
    assert finish.covers_lot(rows[0], outcomes)
    assert not finish.covers_lot(rows[0], outcomes[:1])
    async with pool.acquire() as conn:
        await finish.settle_lot(conn, owner="w1", claimed=rows, outcomes=outcomes)
    [event] = await emitted(pool, job_id)
    assert [(d.language, d.damages) for d in event.descriptions] == [
        ("en", DESCRIPTION_EN),
        ("ru", "[ru] t"),
        ("ru", "[ru] t"),  # as often as asked
    ]
    assert (event.pending_languages, event.warnings) == (["de"], [finish.FAILED])
    assert event.usage.input_tokens == 7
    work = {r["language"]: r for r in await work_rows(pool, job_id)}
    assert (work["ru"]["status"], work["de"]["status"]) == ("done", "failed")
    assert (work["de"]["last_error"], work["de"]["lease_owner"]) == ("refused", None)
    stored = await pool.fetch(
        "SELECT language, outcome FROM translate_results WHERE job_id = $1 ORDER BY 1", job_id
    )
    assert [tuple(r) for r in stored] == [("de", "failed"), ("ru", "translated")]


async def test_a_lot_whose_lease_on_one_language_was_lost_completes_with_its_new_holder(
    pool: asyncpg.Pool,
) -> None:
    job_id = await create_job(pool, 1)
    await deliver(pool, assessed(job_id, languages=["ru", "de"]))
    rows = await claim(pool, job_id, "w1")
    de = next(r for r in rows if r["language"] == "de")
    await pool.execute("UPDATE translate_work SET lease_owner = 'w2' WHERE id = $1", de["id"])
    async with pool.acquire() as conn:
        await finish.settle_lot(
            conn, owner="w1", claimed=rows, outcomes=[_translated(r) for r in rows]
        )
        assert await emitted(pool, job_id) == []  # ru stored; de belongs to w2 now
        assert await results.results_of(conn, job_id, 0) != []
        async with conn.transaction():  # w2 finishes de the per-row way: the lot completes
            lot = await results.settle(conn, work_id=de["id"], owner="w2", o=_translated(de))
            assert lot is not None
            await finish.complete_if_done(conn, job_id, 0, locked=lot)
    [event] = await emitted(pool, job_id)
    assert sorted(d.language for d in event.descriptions) == ["de", "en", "ru"]


async def test_the_only_language_of_a_cancelled_lot_is_stored_without_an_event(
    pool: asyncpg.Pool,
) -> None:
    job_id = await create_job(pool, 1)
    await deliver(pool, assessed(job_id, languages=["ru"]))
    [row] = await claim(pool, job_id, "w1")
    await pool.execute("UPDATE translate_lots SET cancelled = true WHERE job_id = $1", job_id)
    async with pool.acquire() as conn:
        await finish.settle_lot(conn, owner="w1", claimed=[row], outcomes=[_translated(row)])
    assert await emitted(pool, job_id) == []
    stored = await pool.fetch("SELECT outcome FROM translate_results WHERE job_id = $1", job_id)
    assert [r["outcome"] for r in stored] == ["translated"]


async def test_a_lots_completion_held_for_its_process_is_returned_for_the_handoff(
    pool: asyncpg.Pool,
) -> None:
    job_id = await create_job(pool, 1)
    await deliver(pool, assessed(job_id, languages=["ru"]))
    [row] = await claim(pool, job_id, "w1")
    event = finish.build_event(row, [results.as_stored(_translated(row))])
    async with pool.acquire() as conn:
        settled = await results.settle_lot(
            conn,
            owner="w1",
            work_ids=[row["id"]],
            outcomes=[_translated(row)],
            done=finish.completion_of(event, held_s=HOLD_S),
        )
    assert settled.marked
    assert settled.written is not None
    stored = await pool.fetchrow(
        "SELECT payload, held_until > now() AS held FROM outbox WHERE id = $1", settled.written.id
    )
    assert stored is not None
    assert stored["held"]
    assert bytes(stored["payload"]) == settled.written.payload
    assert LotTranslated.model_validate_json(settled.written.payload).lot_key == event.lot_key
    # nobody publishes it here: gone, it cannot reach another test's relay after its hold
    await pool.execute("DELETE FROM outbox WHERE id = $1", settled.written.id)


async def test_workers_take_a_lots_languages_together_only_when_the_claim_has_them_all(
    pool: asyncpg.Pool,
) -> None:
    job_id = await create_job(pool, 2)
    for seq in (0, 1):
        await deliver(pool, assessed(job_id, seq, languages=["ru", "de"]))
    async with pool.acquire() as conn:
        rows = await jobs.claim(
            conn,
            WORK,
            owner="w1",
            lease_s=30,
            limit=3,
            where=f"job_id = '{job_id}'",
            select=store.CLAIM_WITH_SOURCE,
        )
    items = sorted(
        sorted((r["lot_seq"], r["language"]) for r in item) for item in work_items.by_lot(rows)
    )
    assert items == [
        [(0, "de"), (0, "ru")],  # lot 0: every language, one worker
        [(1, "ru")],  # lot 1's de was not claimed: ru alone
    ]
