"""A job's token and cost totals, kept without a hot row.

A stage that stores a model result appends the call's usage to ``job_usage`` in the same
statement, instead of adding it to the ``jobs`` row that every worker of the job
would otherwise update (migration 0060 says why). :func:`fold` moves pending rows into the jobs'
totals: the notifier runs it every ``interval_s`` (:func:`keep_folding`) and, for one job, in the
transaction that finalises it, so a finished job's totals are exact when its webhook goes out.
Usage recorded after that (a call that was in flight when its lot was cancelled) is folded by the
next periodic pass. A lot's own totals are still written at once, on its ``lots`` row.

``fold`` locks the jobs rows it updates with ``SKIP LOCKED``: a job whose row another
transaction holds (e.g. the notifier counting its lots) is left for the next pass, so folding
never waits on a job row and cannot deadlock with anyone.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import asyncpg

from gen_common.db import DB_TROUBLE, Conn

_FOLD = """
WITH locked AS (
         SELECT job_id FROM jobs
         WHERE job_id IN (SELECT job_id FROM job_usage WHERE {where})
         ORDER BY job_id
         FOR UPDATE SKIP LOCKED),
     gone AS (
         DELETE FROM job_usage u USING locked WHERE u.job_id = locked.job_id
         RETURNING u.job_id, u.input_tokens, u.cached_tokens, u.output_tokens,
                   u.reasoning_tokens, u.cost_usd),
     sums AS (
         SELECT job_id, sum(input_tokens) AS input, sum(cached_tokens) AS cached,
                sum(output_tokens) AS output, sum(reasoning_tokens) AS reasoning,
                sum(cost_usd) AS cost
         FROM gone GROUP BY job_id)
UPDATE jobs SET input_tokens = jobs.input_tokens + sums.input,
       cached_tokens = jobs.cached_tokens + sums.cached,
       output_tokens = jobs.output_tokens + sums.output,
       reasoning_tokens = jobs.reasoning_tokens + sums.reasoning,
       cost_usd = jobs.cost_usd + sums.cost, updated_at = now()
FROM sums WHERE jobs.job_id = sums.job_id"""
_FOLD_ALL = _FOLD.format(where="true")
_FOLD_ONE = _FOLD.format(where="job_id = $1")


async def fold(conn: Conn, job_id: uuid.UUID | None = None) -> int:
    """Add pending usage to the jobs' totals (every job, or ``job_id``); returns jobs updated."""
    status = (
        await conn.execute(_FOLD_ALL) if job_id is None else await conn.execute(_FOLD_ONE, job_id)
    )
    return int(status.split()[-1])


async def keep_folding(pool: asyncpg.Pool, *, interval_s: float = 0.5) -> None:
    """Fold every ``interval_s`` until cancelled; database trouble only delays it."""
    while True:
        with contextlib.suppress(*DB_TROUBLE):
            async with pool.acquire() as conn:
                await fold(conn)
        await asyncio.sleep(interval_s)
