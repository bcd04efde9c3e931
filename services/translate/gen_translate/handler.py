"""Consumer handlers: run inside the Kafka batch transaction; they only record work.

lots.assessed -> the lot's English text and assessment, status 'translating', one work row per
distinct non-en language (or LotTranslated at once when there is none). jobs.control -> the
job's queued work is cancelled.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
from gen_common.breaker import Breaker, State
from gen_common.claimer import Claimer
from gen_common.db import Conn
from gen_common.events import JobCancelRequested, LotAssessed
from gen_common.kafka import Received

from gen_translate import finish, intake, store
from gen_translate.work_items import by_lot

log = logging.getLogger(__name__)
WAKE_CHANNEL = "gen_translate_work"


@dataclass(frozen=True, slots=True)
class Deps:
    sync_budget_s: float
    workers: Workers | None = None  # this process's realtime workers, for sync lots leased here


@dataclass(frozen=True, slots=True)
class Workers:
    """The claimer of this process's workers and their breaker: while it is closed, the intake
    leases sync lots to the workers waiting (no claim statement, no NOTIFY to wait for)."""

    claimer: Claimer[list[asyncpg.Record]]
    breaker: Breaker
    lease_s: float


def _accepted(event: LotAssessed, deps: Deps) -> intake.Accepted:
    languages = finish.targets(event.languages)
    deadline = None
    if event.mode == "sync":
        deadline = event.occurred_at + timedelta(seconds=deps.sync_budget_s)
    return intake.Accepted(
        event, languages, finish.distinct(languages), deadline, store.PRIORITY[event.mode]
    )


async def on_assessed(event: LotAssessed, conn: Conn, deps: Deps) -> None:
    await _accept(conn, [event], deps)


async def on_assessed_many(received: list[Received], conn: Conn, deps: Deps) -> None:
    await _accept(conn, [r.event for r in received], deps)


def assessed_in_one_statement(received: list[Received]) -> bool:
    """Whether :func:`on_assessed_many` writes these lots with one statement (the consumer then
    needs no transaction block, gen_common.kafka.Subscription.atomic): unless one asks for en
    alone, as such a lot is completed at once, with statements of its own."""
    return all(finish.targets(r.event.languages) for r in received)


async def _accept(conn: Conn, events: list[LotAssessed], deps: Deps) -> None:
    """One statement for the lots (intake.accept_lots, NOTIFY included), then the completion of
    those asking for en alone. When that statement is its own transaction, its sync lots go
    straight to this process's waiting workers, leased by it."""
    accepted = [_accepted(event, deps) for event in events]
    w = deps.workers
    sync = any(a.event.mode == "sync" for a in accepted)
    if w is None or not sync or conn.is_in_transaction() or w.breaker.state is not State.CLOSED:
        done = await intake.accept_lots(conn, accepted, notify=WAKE_CHANNEL)
    else:
        with w.claimer.reserve() as reserved:
            lease = reserved.lease(w.lease_s)
            done = await intake.accept_lots(conn, accepted, notify=WAKE_CHANNEL, lease=lease)
            reserved.hand(by_lot(done.leased))  # committed: its own transaction
    if done.dropped:
        log.info("lots of cancelled jobs dropped", extra={"count": done.dropped})
    for job_id, lot_seq in done.english_only:
        await finish.complete_if_done(conn, job_id, lot_seq)


async def on_control(event: JobCancelRequested, conn: Conn) -> None:
    cancelled = await store.cancel_job(conn, event.job_id)
    log.info("job cancelled", extra={"job_id": str(event.job_id), "cancelled_work": cancelled})
