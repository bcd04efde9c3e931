"""SQL of a lot's outcome: the result row with its tokens and cost accounted on the lot and the
job (one statement), the realtime path's whole success in one statement (owner check, call log,
result, outbox event), and the lot's missing images.

Plain functions taking a connection; callers open the transactions they need.
"""

from __future__ import annotations

import uuid

import asyncpg
from gen_common import outbox
from gen_common.db import Conn
from gen_common.outbox_handoff import HOLD_S, Written

from gen_vision.lot_request import ModelResult

# The result row, the job's share of its tokens and cost (folded into jobs by
# gen_common.job_usage: no hot row) and the lot's status and totals. $1..$13 are the result's;
# {when} may hold the INSERT back (the realtime path's owner check); ``l`` returns the lot's
# status afterwards, and nothing when the lot already had a result.
_RESULT = """r AS (
        INSERT INTO vision_results (job_id, lot_seq, assessment, html, missing_images, model,
                                    response_id, via_batch, input_tokens, cached_tokens,
                                    output_tokens, reasoning_tokens, cost_usd)
        SELECT $1::uuid, $2::int, $3::jsonb, $4::text, $5::text[], $6::text, $7::text, $8::bool,
               $9::bigint, $10::bigint, $11::bigint, $12::bigint, $13::numeric {when}
        ON CONFLICT (job_id, lot_seq) DO NOTHING
        RETURNING job_id, lot_seq),
    j AS (
        INSERT INTO job_usage (job_id, input_tokens, cached_tokens, output_tokens,
                               reasoning_tokens, cost_usd)
        SELECT job_id, $9, $10, $11, $12, $13 FROM r),
    l AS (
        UPDATE lots SET status = CASE WHEN lots.status IN ('pending', 'assessing')
                                      THEN 'assessed' ELSE lots.status END,
               missing_images = $5, input_tokens = lots.input_tokens + $9,
               cached_tokens = lots.cached_tokens + $10,
               output_tokens = lots.output_tokens + $11,
               reasoning_tokens = lots.reasoning_tokens + $12,
               cost_usd = lots.cost_usd + $13, updated_at = now()
        FROM r WHERE lots.job_id = r.job_id AND lots.lot_seq = r.lot_seq
        RETURNING lots.status, lots.traceparent)"""


def _result_args(
    job_id: uuid.UUID, lot_seq: int, result: ModelResult, missing: list[str], via_batch: bool
) -> tuple[object, ...]:
    u = result.usage
    return (
        job_id,
        lot_seq,
        result.assessment,
        result.html,
        missing,
        result.model,
        result.response_id,
        via_batch,
        u.input_tokens,
        u.cached_tokens,
        u.output_tokens,
        u.reasoning_tokens,
        u.cost_usd,
    )


async def save_result(
    conn: Conn,
    job_id: uuid.UUID,
    lot_seq: int,
    result: ModelResult,
    *,
    missing_images: list[str],
    via_batch: bool,
) -> str | None:
    """Insert the result and account it on the lot and the job, in one statement.

    Returns the lot's status afterwards (``assessed``, or e.g. ``cancelled``), or None when the
    lot already had a result (nothing was changed).
    """
    status: str | None = await conn.fetchval(
        f"WITH {_RESULT.format(when='')} SELECT status FROM l",
        *_result_args(job_id, lot_seq, result, missing_images, via_batch),
    )
    return status


async def finish_assessed(
    conn: Conn,
    work: asyncpg.Record,
    owner: str,
    call: tuple[int, str | None] | None,
    result: ModelResult,
    *,
    missing_images: list[str],
    event: outbox.Row,
    held: bool = False,
) -> tuple[bool, Written | None]:
    """The realtime path's success, ONE statement and no transaction round trips: the owner
    check (``jobs.finish``), the call's log line (written even when the lease was lost: the call
    happened), the result (as :func:`save_result`) and ``event`` in the outbox when the lot is
    then 'assessed' (not when it was cancelled meanwhile). ``held``: the outbox row is held for
    this process to publish (gen_common.outbox_handoff), and returned; else the relay is
    notified. (False, None): the lease was lost, and nothing but the call's log line was
    written."""
    row = await conn.fetchrow(
        f"""WITH f AS (
                UPDATE vision_work SET status = 'done', lease_owner = NULL, lease_until = NULL
                WHERE id = $14 AND status = 'running' AND lease_owner = $15 RETURNING 1),
            c AS (
                UPDATE vision_calls SET finished_at = now(), outcome = 'ok', response_id = $17
                WHERE id = $16),
            {_RESULT.format(when="WHERE EXISTS (SELECT 1 FROM f)")},
            o AS (
                INSERT INTO outbox (topic, key, payload, traceparent, held_until)
                SELECT $18, $19, $20, coalesce($21::text, l.traceparent),
                       now() + make_interval(secs => $22::float8) FROM l
                WHERE l.status = 'assessed' RETURNING id, traceparent)
            SELECT EXISTS (SELECT 1 FROM f) AS finished, o.id, o.traceparent,
                   (SELECT pg_notify('{outbox.CHANNEL}', '') WHERE $22::float8 IS NULL
                                                             AND o.id IS NOT NULL)
            FROM (SELECT 1) AS one LEFT JOIN o ON true""",
        *_result_args(work["job_id"], work["lot_seq"], result, missing_images, False),
        work["id"],
        owner,
        call[0] if call else None,
        call[1] if call else None,
        *event,
        HOLD_S if held else None,
    )
    assert row is not None
    if not held or row["id"] is None:
        return row["finished"], None
    topic, key, payload, _ = event
    return row["finished"], Written(row["id"], topic, key, payload, row["traceparent"])


async def set_missing_images(
    conn: Conn, job_id: uuid.UUID, lot_seq: int, missing: list[str]
) -> None:
    await conn.execute(
        """UPDATE lots SET missing_images = $3, updated_at = now()
           WHERE job_id = $1 AND lot_seq = $2""",
        job_id,
        lot_seq,
        missing,
    )
