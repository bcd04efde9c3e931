"""Workers: claim one (lot, language), call the model, store the outcome; plus the lease reaper.

A claim is committed before the call, so a slow call holds no lock. The outcome is stored only if
this worker still holds the lease (``jobs.finish``/``jobs.fail``), so a reclaimed row is stored
once. Sync lots carry a deadline: a language that cannot finish inside it is recorded as
``time_limit`` (never English text); the reaper also expires queued rows past their deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import asyncpg
from gen_common import jobs
from gen_common.errors import PermanentError, RateLimited, RetryableError

from gen_translate import finish, store
from gen_translate.describe import Describer, Translation
from gen_translate.settings import TranslateOptions
from gen_translate.store import WORK, Outcome

log = logging.getLogger(__name__)


class Gate(Protocol):
    """The circuit breaker as the workers see it."""

    def allow(self) -> bool: ...


class Wakeup:
    """Wakes idle workers on NOTIFY; a generation counter means no wake-up is ever missed."""

    def __init__(self) -> None:
        self.generation = 0
        self._event = asyncio.Event()

    def notify(self, *_: object) -> None:
        self.generation += 1
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, seen: int, timeout_s: float) -> None:
        if self.generation != seen:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout_s)


@dataclass(frozen=True, slots=True)
class WorkerDeps:
    pool: asyncpg.Pool
    describer: Describer
    options: TranslateOptions
    gate: Gate
    wake: Wakeup
    owner: str


def backoff_s(attempts: int, options: TranslateOptions) -> float:
    delay: float = min(options.retry_base_s * 2.0 ** max(attempts - 1, 0), options.retry_max_s)
    return delay * (0.5 + random.random() / 2)


async def run_worker(deps: WorkerDeps, index: int) -> None:
    owner = f"{deps.owner}-{index}"
    try:
        while True:
            if not deps.gate.allow():
                await asyncio.sleep(deps.options.idle_poll_s)
                continue
            seen = deps.wake.generation
            async with deps.pool.acquire() as conn:
                rows = await jobs.claim(conn, WORK, owner=owner, lease_s=deps.options.lease_s)
            if not rows:
                await deps.wake.wait(seen, deps.options.idle_poll_s)
                continue
            await translate_one(deps, owner, rows[0])
    finally:
        with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            async with deps.pool.acquire() as conn:
                await jobs.release(conn, WORK, owner=owner)


def _remaining_s(deadline: datetime | None) -> float | None:
    if deadline is None:
        return None
    return (deadline - datetime.now(UTC)).total_seconds()


async def translate_one(deps: WorkerDeps, owner: str, row: asyncpg.Record) -> None:
    """Translate one claimed (lot, language) and store what came of it."""
    job_id, lot_seq, language = row["job_id"], row["lot_seq"], row["language"]
    async with deps.pool.acquire() as conn:
        source = await store.lot_source(conn, job_id, lot_seq)
    if source is None or source["cancelled"]:
        async with deps.pool.acquire() as conn:
            await jobs.fail(conn, WORK, job_id=row["id"], owner=owner, error="cancelled")
        return
    outcome = Outcome(job_id, lot_seq, language, "time_limit", error_code=finish.TIME_LIMIT)
    remaining = _remaining_s(row["deadline_at"])
    if remaining is None or remaining > 0:
        try:
            async with asyncio.timeout(remaining):
                translation = await deps.describer.translate(
                    text=source["description_en"],
                    language=language,
                    metadata={
                        "job_id": str(job_id),
                        "lot_seq": str(lot_seq),
                        "target_language": language,
                    },
                    timeout_s=remaining,
                )
            outcome = _translated(job_id, lot_seq, language, translation)
        except TimeoutError:
            pass  # the sync budget ran out during the call
        except RateLimited as exc:
            delay = exc.retry_after or backoff_s(1, deps.options)
            if not _past(row["deadline_at"], delay):
                async with deps.pool.acquire() as conn:
                    await store.requeue_rate_limited(
                        conn, work_id=row["id"], owner=owner, delay_s=delay
                    )
                return
        except RetryableError as exc:
            delay = backoff_s(row["attempts"], deps.options)
            if row["attempts"] >= deps.options.max_attempts:
                outcome = _failed(job_id, lot_seq, language, f"retries_exhausted: {exc.code}")
            elif not _past(row["deadline_at"], delay):
                log.warning("translation failed, retrying", extra={"error": repr(exc)})
                async with deps.pool.acquire() as conn:
                    await jobs.retry_later(
                        conn, WORK, job_id=row["id"], owner=owner, delay_s=delay, error=repr(exc)
                    )
                return
        except PermanentError as exc:
            log.warning("translation failed permanently", extra={"error": repr(exc)})
            outcome = _failed(job_id, lot_seq, language, exc.code)
    await _store(deps.pool, row["id"], owner, outcome)


def _past(deadline: datetime | None, delay_s: float) -> bool:
    remaining = _remaining_s(deadline)
    return remaining is not None and remaining <= delay_s


def _translated(job_id: uuid.UUID, lot_seq: int, language: str, t: Translation) -> Outcome:
    return Outcome(
        job_id,
        lot_seq,
        language,
        "translated",
        text=t.text,
        model=t.model,
        response_id=t.response_id,
        usage=t.usage,
    )


def _failed(job_id: uuid.UUID, lot_seq: int, language: str, code: str) -> Outcome:
    return Outcome(job_id, lot_seq, language, "failed", error_code=code[:100])


async def _store(pool: asyncpg.Pool, work_id: int, owner: str, outcome: Outcome) -> None:
    async with pool.acquire() as conn, conn.transaction():
        if outcome.outcome == "translated":
            held = await jobs.finish(conn, WORK, job_id=work_id, owner=owner)
        else:
            held = await jobs.fail(
                conn, WORK, job_id=work_id, owner=owner, error=outcome.error_code or ""
            )
        if held:  # else the lease expired and another worker owns the row now
            await finish.record_outcome(conn, outcome)


async def run_reaper(pool: asyncpg.Pool, interval_s: float) -> None:
    """Requeue rows of dead workers; record sync work whose budget ran out while queued."""
    while True:
        try:
            async with pool.acquire() as conn, conn.transaction():
                await jobs.reap(conn, WORK)
                for r in await store.expire_overdue(conn):
                    await finish.record_outcome(
                        conn,
                        Outcome(
                            r["job_id"],
                            r["lot_seq"],
                            r["language"],
                            "time_limit",
                            error_code=finish.TIME_LIMIT,
                        ),
                    )
        except (OSError, asyncpg.PostgresConnectionError) as exc:
            log.warning("reaper pass failed", extra={"error": repr(exc)})
        await asyncio.sleep(interval_s)
