"""SQL of a (lot, language)'s outcome: the result row (alone, or with the worker's owner check in
one statement, or for all of a lot's languages at once with its completion too), the lot's row
lock and its results. What a completed lot writes is :mod:`gen_translate.completion`.

Plain functions taking a connection; callers own transactions.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from gen_common import outbox
from gen_common.db import Conn
from gen_common.events import TokenUsage
from gen_common.outbox_handoff import Written

from gen_translate import completion
from gen_translate.completion import Completion
from gen_translate.store import WORK

# The result row of an Outcome from parameters $1..$13 (see _result_args); a SELECT, so a
# statement can add a WHERE to it.
_INSERT_RESULT = """
    INSERT INTO translate_results (job_id, lot_seq, language, outcome, text, error_code, model,
                                   response_id, input_tokens, cached_tokens, output_tokens,
                                   reasoning_tokens, cost_usd)
    SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13"""
_ON_CONFLICT = "ON CONFLICT (job_id, lot_seq, language) DO NOTHING"


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one (lot, language) ended: a translation, or the reason there is none."""

    job_id: uuid.UUID
    lot_seq: int
    language: str
    outcome: str  # 'translated' | 'time_limit' | 'failed'
    text: str | None = None
    error_code: str | None = None
    model: str | None = None
    response_id: str | None = None
    usage: TokenUsage = field(default_factory=TokenUsage)


def _result_args(o: Outcome) -> tuple[Any, ...]:
    u = o.usage
    return (
        *(o.job_id, o.lot_seq, o.language, o.outcome, o.text, o.error_code, o.model),
        *(o.response_id, u.input_tokens, u.cached_tokens, u.output_tokens, u.reasoning_tokens),
        u.cost_usd,
    )


async def insert_result(conn: Conn, o: Outcome) -> bool:
    row = await conn.fetchrow(f"{_INSERT_RESULT} {_ON_CONFLICT} RETURNING 1", *_result_args(o))
    return row is not None


async def settle(conn: Conn, *, work_id: int, owner: str, o: Outcome) -> asyncpg.Record | None:
    """``jobs.finish`` (translated) or ``jobs.fail`` (other outcomes) with the owner check, the
    outcome's result row only if this worker still held the row, and then the lot's row lock
    (:func:`lock_lot`): ONE statement. Returns the locked lot row, or None when the lease was
    lost (nothing written, nothing locked). The caller then runs the lot's completion check
    (finish.complete_if_done) on it; its read of the results is a later statement, so it sees
    every result committed by a finisher that held the lock before."""
    return await conn.fetchrow(
        f"""WITH f AS (
                UPDATE {WORK} SET status = $16, lease_owner = NULL, lease_until = NULL,
                       last_error = CASE WHEN $16 = 'done' THEN last_error
                                         ELSE coalesce($6, '') END
                WHERE id = $14 AND status = 'running' AND lease_owner = $15 RETURNING 1),
            r AS ({_INSERT_RESULT} WHERE EXISTS (SELECT 1 FROM f) {_ON_CONFLICT})
            SELECT * FROM translate_lots
            WHERE job_id = $1 AND lot_seq = $2 AND EXISTS (SELECT 1 FROM f)
            FOR UPDATE""",
        *_result_args(o),
        work_id,
        owner,
        "done" if o.outcome == "translated" else "failed",
    )


@dataclass(frozen=True, slots=True)
class Settled:
    """What :func:`settle_lot` wrote: ``settled`` of its rows were still leased to the owner
    (their results are stored); ``marked``: the lot was completed in the same statement."""

    settled: int
    marked: bool
    written: Written | None = None  # its LotTranslated, when held for this process


async def settle_lot(
    conn: Conn, *, owner: str, work_ids: list[int], outcomes: list[Outcome], done: Completion
) -> Settled:
    """:func:`settle` for outcomes of EVERY language of one lot, with its completion, in ONE
    statement: holding the leases of all its languages, no other finisher can exist, so there is
    nothing to lock or read back. ``done`` was built from the claimed rows and ``outcomes``; it
    is written only if every result row was, and the lot was neither cancelled nor completed
    before. A row whose lease was lost is skipped (another worker owns it); then the lot is not
    marked here and the caller runs the locked completion check (finish.complete_if_done)."""
    first = outcomes[0]
    u = [o.usage for o in outcomes]
    row = await conn.fetchrow(
        f"""WITH x AS (
                SELECT * FROM unnest($3::bigint[], $4::text[], $5::text[], $6::text[],
                                     $7::text[], $8::text[], $9::text[], $10::bigint[],
                                     $11::bigint[], $12::bigint[], $13::bigint[], $14::numeric[])
                    AS x(work_id, language, outcome, text, error_code, model, response_id,
                         input_tokens, cached_tokens, output_tokens, reasoning_tokens, cost_usd)),
            f AS (
                UPDATE {WORK} w
                SET status = CASE WHEN x.outcome = 'translated' THEN 'done' ELSE 'failed' END,
                    lease_owner = NULL, lease_until = NULL,
                    last_error = CASE WHEN x.outcome = 'translated' THEN w.last_error
                                      ELSE coalesce(x.error_code, '') END
                FROM x WHERE w.id = x.work_id AND w.status = 'running' AND w.lease_owner = $15
                RETURNING w.id),
            r AS (
                INSERT INTO translate_results (job_id, lot_seq, language, outcome, text,
                    error_code, model, response_id, input_tokens, cached_tokens, output_tokens,
                    reasoning_tokens, cost_usd)
                SELECT $1, $2, x.language, x.outcome, x.text, x.error_code, x.model,
                       x.response_id, x.input_tokens, x.cached_tokens, x.output_tokens,
                       x.reasoning_tokens, x.cost_usd
                FROM x WHERE x.work_id IN (SELECT id FROM f) {_ON_CONFLICT} RETURNING 1),
            marked AS (
                UPDATE translate_lots SET translated_at = now()
                WHERE job_id = $1 AND lot_seq = $2 AND translated_at IS NULL AND NOT cancelled
                  AND (SELECT count(*) FROM r) = cardinality($3::bigint[])
                RETURNING 1),
            {completion.ctes(16, "AND EXISTS (SELECT 1 FROM marked)")}
            SELECT (SELECT count(*) FROM f) AS settled, EXISTS (SELECT 1 FROM marked) AS marked,
                   (SELECT id FROM o) AS outbox_id, (SELECT traceparent FROM o) AS traceparent,
                   (SELECT pg_notify('{outbox.CHANNEL}', '') FROM o WHERE $29::float8 IS NULL)""",
        first.job_id,
        first.lot_seq,
        work_ids,
        [o.language for o in outcomes],
        [o.outcome for o in outcomes],
        [o.text for o in outcomes],
        [o.error_code for o in outcomes],
        [o.model for o in outcomes],
        [o.response_id for o in outcomes],
        [x.input_tokens for x in u],
        [x.cached_tokens for x in u],
        [x.output_tokens for x in u],
        [x.reasoning_tokens for x in u],
        [x.cost_usd for x in u],
        owner,
        *done.args(),
    )
    assert row is not None
    written = None
    if done.held_s is not None and row["outbox_id"] is not None:
        topic, key, payload, _ = done.event
        written = Written(row["outbox_id"], topic, key, payload, row["traceparent"])
    return Settled(int(row["settled"]), bool(row["marked"]), written)


async def lock_lot(conn: Conn, job_id: uuid.UUID, lot_seq: int) -> asyncpg.Record | None:
    """Lock the lot's translate row: concurrent finishers of one lot queue here."""
    return await conn.fetchrow(
        "SELECT * FROM translate_lots WHERE job_id = $1 AND lot_seq = $2 FOR UPDATE",
        job_id,
        lot_seq,
    )


Stored = asyncpg.Record | Mapping[str, Any]  # a translate_results row, read or as written


def as_stored(o: Outcome) -> dict[str, Any]:
    """The columns of ``o``'s result row that LotTranslated is built from, without reading it."""
    u = o.usage
    return {
        "language": o.language,
        "outcome": o.outcome,
        "text": o.text,
        "input_tokens": u.input_tokens,
        "cached_tokens": u.cached_tokens,
        "output_tokens": u.output_tokens,
        "reasoning_tokens": u.reasoning_tokens,
        "cost_usd": u.cost_usd,
    }


async def results_of(conn: Conn, job_id: uuid.UUID, lot_seq: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT * FROM translate_results WHERE job_id = $1 AND lot_seq = $2", job_id, lot_seq
    )
