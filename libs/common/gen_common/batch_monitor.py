"""Poll submitted batches, download their output and error files, and settle every line.

A monitor leases the rows it polls (``lease_owner``/``lease_until``, FOR UPDATE SKIP LOCKED), so
two processes never poll or apply the same batch at once. Results are applied in chunks of
``apply_chunk`` items, one transaction each; an item leaves 'pending' in the same transaction as
the stage's complete/retry/fail/release, so a crash mid-way resumes with the pending items only
and no item is ever settled twice. Transient errors while polling never fail anything (B19): the
row is polled again at the next interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import asyncpg
import openai
import orjson
import pydantic
from openai import AsyncOpenAI
from openai.types import Batch
from openai.types.responses import Response

from gen_common.batch_lines import SKIPPED, TERMINAL, FailedBatch, line_error, settle_failure
from gen_common.batch_options import BatchOptions
from gen_common.batch_source import BatchSource, BatchUsage, LineError, process_id
from gen_common.db import Conn, transaction
from gen_common.errors import PermanentError, RetryableError

log = logging.getLogger(__name__)


class Monitor:
    def __init__(
        self,
        pool: asyncpg.Pool,
        client: AsyncOpenAI,
        source: BatchSource,
        options: BatchOptions,
        finished: asyncio.Event,
    ) -> None:
        self.pool, self.client, self.source, self.opts = pool, client, source, options
        self.stage, self.finished = source.stage, finished
        self.me = process_id()

    async def loop(self) -> None:
        while True:
            polled = 0
            try:
                polled = await self.tick()
            except (openai.APIError, asyncpg.PostgresError, OSError) as exc:
                log.warning("batch monitor tick failed", extra={"error": repr(exc)})
            if not polled:
                await asyncio.sleep(min(self.opts.poll_interval_s, 5.0))

    async def tick(self) -> int:
        async with transaction(self.pool) as conn:
            rows = await conn.fetch(
                """UPDATE openai_batches SET lease_owner = $2,
                          lease_until = now() + make_interval(secs => $3),
                          next_poll_at = now() + make_interval(secs => $4)
                   WHERE id IN (SELECT id FROM openai_batches
                                WHERE stage = $1 AND status = 'submitted' AND next_poll_at <= now()
                                  AND (lease_until IS NULL OR lease_until < now())
                                ORDER BY next_poll_at LIMIT 50 FOR UPDATE SKIP LOCKED)
                   RETURNING id, batch_id, cancel_requested""",
                self.stage,
                self.me,
                self.opts.poll_lease_s,
                self.opts.poll_interval_s,
            )
        for row in rows:
            try:
                await self.poll(row["id"], row["batch_id"], row["cancel_requested"])
            except (openai.APIError, OSError) as exc:  # transient: poll again next interval
                log.warning(
                    "batch poll failed", extra={"batch_id": row["batch_id"], "error": repr(exc)}
                )
                await self._unlease(row["id"])
        return len(rows)

    async def poll(self, row_id: int, batch_id: str, cancel_requested: bool) -> None:
        batch = await self.client.batches.retrieve(batch_id)
        stuck = batch.expires_at and time.time() > batch.expires_at + self.opts.stuck_grace_s
        if batch.status in ("validating", "in_progress") and (cancel_requested or stuck):
            # a BadRequestError means it moved on meanwhile; the next poll sees where to
            with contextlib.suppress(openai.BadRequestError):
                batch = await self.client.batches.cancel(batch_id)
        async with transaction(self.pool) as conn:
            await conn.execute(
                """UPDATE openai_batches SET remote_status = $2, counts = $3, usage = $4,
                          output_file_id = $5, error_file_id = $6, last_polled_at = now()
                   WHERE id = $1""",
                row_id,
                batch.status,
                batch.request_counts.model_dump() if batch.request_counts else None,
                batch.usage.model_dump() if batch.usage else None,
                batch.output_file_id,
                batch.error_file_id,
            )
        if batch.status not in TERMINAL:
            await self._unlease(row_id)
            return
        await self.apply(row_id, batch)
        self.finished.set()

    async def _unlease(self, row_id: int) -> None:
        async with transaction(self.pool) as conn:
            await conn.execute(
                """UPDATE openai_batches SET lease_owner = NULL, lease_until = NULL
                   WHERE id = $1 AND lease_owner = $2""",
                row_id,
                self.me,
            )

    async def _download(self, file_id: str | None) -> dict[str, dict[str, Any]]:
        if not file_id:
            return {}
        content = await self.client.files.content(file_id)
        lines = {}
        for raw in content.content.splitlines():
            if raw.strip():
                line = orjson.loads(raw)
                lines[str(line.get("custom_id"))] = line
        return lines

    async def apply(self, row_id: int, batch: Batch) -> None:
        lines = await self._download(batch.error_file_id)
        lines.update(await self._download(batch.output_file_id))
        plan = FailedBatch(batch) if batch.status == "failed" else None
        while True:
            async with transaction(self.pool) as conn:
                mine = await conn.fetchval(
                    """UPDATE openai_batches SET lease_until = now() + make_interval(secs => $3)
                       WHERE id = $1 AND lease_owner = $2 RETURNING id""",
                    row_id,
                    self.me,
                    self.opts.poll_lease_s,
                )
                if mine is None:
                    return  # lease lost: the new holder finishes the job
                items = await conn.fetch(
                    """SELECT work_id, custom_id, line_no, attempt FROM openai_batch_items
                       WHERE batch_row = $1 AND status = 'pending'
                       ORDER BY line_no LIMIT $2 FOR UPDATE""",
                    row_id,
                    self.opts.apply_chunk,
                )
                if not items:
                    await conn.execute(
                        """UPDATE openai_batches SET status = 'finished', completed_at = now(),
                                  lease_owner = NULL, lease_until = NULL, error = $2
                           WHERE id = $1""",
                        row_id,
                        plan.summary if plan else None,
                    )
                    log.info("batch applied", extra={"row": row_id, "status": batch.status})
                    return
                await self._settle_chunk(conn, row_id, items, lines, plan)

    async def _settle_chunk(
        self,
        conn: Conn,
        row_id: int,
        items: list[asyncpg.Record],
        lines: dict[str, dict[str, Any]],
        plan: FailedBatch | None,
    ) -> None:
        released: dict[float, list[int]] = {}
        updates = []
        for item in items:
            work_id, attempt = item["work_id"], item["attempt"]
            if plan is not None:
                status, err, delay = await plan.settle(conn, self.opts, self.source, item)
            else:
                line = lines.get(item["custom_id"])
                status, err, delay = await self._settle_line(conn, work_id, attempt, line)
            if status == "released":
                released.setdefault(delay, []).append(work_id)
            updates.append((row_id, work_id, status, err.code if err else None))
        for delay, ids in released.items():
            await self.source.release(conn, ids, delay_s=delay, reason="batch did not run it")
        await conn.executemany(
            """UPDATE openai_batch_items SET status = $3, error = $4, finished_at = now()
               WHERE batch_row = $1 AND work_id = $2""",
            updates,
        )

    async def _settle_line(
        self, conn: Conn, work_id: int, attempt: int, line: dict[str, Any] | None
    ) -> tuple[str, LineError | None, float]:
        if line is None:  # not in either file (should not happen): send it again
            return "released", LineError("missing_line", "no output or error line"), 0.0
        err = line_error(line)
        if err is not None and err.code in SKIPPED:
            return "released", err, 0.0
        if err is None:
            try:
                response = Response.model_validate(line["response"]["body"])
                async with conn.transaction():  # a savepoint: a refused answer undoes only itself
                    await self.source.complete(conn, work_id, response, BatchUsage.of(response))
                return "completed", None, 0.0
            except pydantic.ValidationError as exc:
                err = LineError("invalid_response", str(exc)[:500], status_code=200)
            except PermanentError as exc:
                err = LineError(exc.code, str(exc), status_code=200)
            except RetryableError as exc:
                err = LineError(exc.code, str(exc), status_code=503)
        status = await settle_failure(conn, self.source, self.opts, work_id, attempt, err)
        return status, err, 0.0
