"""SQL of a lot's outcome: the result row with its tokens and cost accounted on the lot and the
job (one statement), and the lot's missing images.

Plain functions taking a connection; callers open the transactions.
"""

from __future__ import annotations

import uuid

from gen_common.db import Conn

from gen_vision.lot_request import ModelResult


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
        """WITH r AS (
               INSERT INTO vision_results (job_id, lot_seq, assessment, html, missing_images,
                                           model, response_id, via_batch, input_tokens,
                                           cached_tokens, output_tokens, reasoning_tokens,
                                           cost_usd)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
               ON CONFLICT (job_id, lot_seq) DO NOTHING
               RETURNING job_id, lot_seq),
           j AS (  -- the job's share: folded into jobs by gen_common.job_usage (no hot row)
               INSERT INTO job_usage (job_id, input_tokens, cached_tokens, output_tokens,
                                      reasoning_tokens, cost_usd)
               SELECT job_id, $9, $10, $11, $12, $13 FROM r)
           UPDATE lots SET status = CASE WHEN lots.status IN ('pending', 'assessing')
                                         THEN 'assessed' ELSE lots.status END,
                  missing_images = $5, input_tokens = lots.input_tokens + $9,
                  cached_tokens = lots.cached_tokens + $10,
                  output_tokens = lots.output_tokens + $11,
                  reasoning_tokens = lots.reasoning_tokens + $12,
                  cost_usd = lots.cost_usd + $13, updated_at = now()
           FROM r WHERE lots.job_id = r.job_id AND lots.lot_seq = r.lot_seq
           RETURNING lots.status""",
        job_id,
        lot_seq,
        result.assessment,
        result.html,
        missing_images,
        result.model,
        result.response_id,
        via_batch,
        result.usage.input_tokens,
        result.usage.cached_tokens,
        result.usage.output_tokens,
        result.usage.reasoning_tokens,
        result.usage.cost_usd,
    )
    return status


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
