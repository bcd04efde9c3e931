"""Consumer handlers: run inside the Kafka batch transaction; they only record work.

lots.assessed -> the lot's English text and assessment, status 'translating', one work row per
distinct non-en language (or LotTranslated at once when there is none). jobs.control -> the
job's queued work is cancelled.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from gen_common.db import Conn
from gen_common.events import JobCancelRequested, LotAssessed

from gen_translate import finish, store

log = logging.getLogger(__name__)
WAKE_CHANNEL = "gen_translate_work"


@dataclass(frozen=True, slots=True)
class Deps:
    sync_budget_s: float


async def on_assessed(event: LotAssessed, conn: Conn, deps: Deps) -> None:
    languages = finish.targets(event.languages)
    deadline = None
    if event.mode == "sync":
        deadline = event.occurred_at + timedelta(seconds=deps.sync_budget_s)
    cancelled, inserted = await store.accept_lot(  # one statement, NOTIFY included
        conn,
        event,
        languages,
        deadline,
        work_languages=finish.distinct(languages),
        priority=store.PRIORITY[event.mode],
        notify=WAKE_CHANNEL,
    )
    if cancelled:
        log.info("lot of a cancelled job dropped", extra={"lot": event.lot_key})
        return
    if inserted and not languages:
        await finish.complete_if_done(conn, event.job_id, event.lot_seq)


async def on_control(event: JobCancelRequested, conn: Conn) -> None:
    cancelled = await store.cancel_job(conn, event.job_id)
    log.info("job cancelled", extra={"job_id": str(event.job_id), "cancelled_work": cancelled})
