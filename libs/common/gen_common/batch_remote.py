"""The remote half of batch submission: upload, create, record, and crash recovery.

Each remote call is recorded in PostgreSQL before and after it (see :mod:`gen_common.batch_submit`
for the whole flow):

- Upload -> 'uploaded' + input_file_id. A crash in between leaves 'preparing' with an expired
  lease: :meth:`BatchRemote.recover` abandons the row and releases its items (an orphan file may
  stay on OpenAI until it expires after ``file_expiry_s``; no batch was created from it).
- Create -> 'submitted' + batch_id. A crash in between leaves 'uploaded': recovery first looks for
  a batch created from that input file (the create may have succeeded and its answer been lost),
  records it if found, and creates it only if not. So a chunk never gets two batches.
- A refused upload/create (4xx) gives the items back as failed lines; a transient error leaves the
  row to recovery after ``submit_interval_s``.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

import asyncpg
import openai
from openai import AsyncOpenAI
from openai.types import Batch

from gen_common.batch_lines import settle_failure
from gen_common.batch_options import BatchOptions
from gen_common.batch_pack import ENDPOINT
from gen_common.batch_source import BatchSource, LineError, process_id
from gen_common.db import transaction

log = logging.getLogger(__name__)


class BatchRemote:
    def __init__(
        self,
        pool: asyncpg.Pool,
        client: AsyncOpenAI,
        source: BatchSource,
        options: BatchOptions,
        finished: asyncio.Event,
    ) -> None:
        self.pool, self.client, self.source, self.opts = pool, client, source, options
        self.stage = source.stage
        self.finished = finished
        self.me = process_id()

    async def send(self, row_id: int, data: bytes) -> None:
        try:
            uploaded = await self.client.files.create(
                file=(f"{self.stage}-{row_id}.jsonl", data, "application/jsonl"),
                purpose="batch",
                expires_after={"anchor": "created_at", "seconds": self.opts.file_expiry_s},
            )
        except openai.APIError as exc:
            await self._on_error(row_id, "upload", exc)
            return
        async with transaction(self.pool) as conn:
            row = await conn.fetchrow(
                """UPDATE openai_batches SET status = 'uploaded', input_file_id = $3,
                          uploaded_at = now(), lease_until = now() + make_interval(secs => $4)
                   WHERE id = $1 AND status = 'preparing' AND lease_owner = $2
                   RETURNING cancel_requested""",
                row_id,
                self.me,
                uploaded.id,
                self.opts.submit_lease_s,
            )
        if row is None:
            log.warning("batch row taken over before upload was recorded", extra={"row": row_id})
            return
        if row["cancel_requested"]:
            await self.abandon(row_id, "job cancelled before the batch was created", None)
            return
        await self.create(row_id, uploaded.id)

    async def create(self, row_id: int, file_id: str) -> None:
        try:
            batch = await self.client.batches.create(
                input_file_id=file_id,
                endpoint=ENDPOINT,
                completion_window="24h",
                metadata={"stage": self.stage, "chunk": str(row_id)},
            )
        except openai.APIError as exc:
            await self._on_error(row_id, "batch create", exc)
            return
        await self.record(row_id, batch)

    async def record(self, row_id: int, batch: Batch) -> None:
        async with transaction(self.pool) as conn:
            won = await conn.fetchval(
                """UPDATE openai_batches SET status = 'submitted', batch_id = $3,
                          remote_status = $4, submitted_at = now(),
                          expires_at = to_timestamp($5), lease_owner = NULL, lease_until = NULL,
                          next_poll_at = now()
                   WHERE id = $1 AND status = 'uploaded' AND lease_owner = $2 RETURNING id""",
                row_id,
                self.me,
                batch.id,
                batch.status,
                float(batch.expires_at or 0),
            )
        if won is None:  # our lease was lost and another process recorded the chunk: undo ours
            log.error("duplicate batch for a chunk; cancelling it", extra={"batch_id": batch.id})
            await self.client.batches.cancel(batch.id)
        else:
            log.info("batch submitted", extra={"row": row_id, "batch_id": batch.id})

    async def _on_error(self, row_id: int, step: str, exc: openai.APIError) -> None:
        """Refused (4xx): give the items back as failed lines. Transient: recovery retries soon."""
        if isinstance(exc, openai.APIStatusError) and not _transient(exc):
            await self.abandon(row_id, f"{step} refused: {exc}", _error_of(exc))
            return
        log.warning("batch %s failed, will retry", step, extra={"row": row_id, "error": repr(exc)})
        async with transaction(self.pool) as conn:
            await conn.execute(
                """UPDATE openai_batches SET lease_until = now() + make_interval(secs => $3),
                          error = $4
                   WHERE id = $1 AND lease_owner = $2""",
                row_id,
                self.me,
                self.opts.submit_interval_s,
                f"{step}: {exc!r}"[:2000],
            )

    async def abandon(self, row_id: int, reason: str, error: LineError | None) -> None:
        """Give the row's items back: released (never sent) or retried/failed (``error``)."""
        async with transaction(self.pool) as conn:
            mine = await conn.fetchval(
                """UPDATE openai_batches SET status = 'abandoned', error = $3, completed_at = now(),
                          lease_owner = NULL, lease_until = NULL
                   WHERE id = $1 AND status IN ('preparing', 'uploaded') AND lease_owner = $2
                   RETURNING id""",
                row_id,
                self.me,
                reason,
            )
            if mine is None:
                return
            items = await conn.fetch(
                """UPDATE openai_batch_items SET status = 'released', finished_at = now(),
                          error = $2
                   WHERE batch_row = $1 AND status = 'pending' RETURNING work_id, attempt""",
                row_id,
                reason,
            )
            if error is None:
                ids = [i["work_id"] for i in items]
                if ids:
                    await self.source.release(conn, ids, delay_s=0.0, reason=reason)
                return
            for item in items:
                status = await settle_failure(
                    conn, self.source, self.opts, item["work_id"], item["attempt"], error
                )
                await conn.execute(
                    """UPDATE openai_batch_items SET status = $3
                       WHERE batch_row = $1 AND work_id = $2""",
                    row_id,
                    item["work_id"],
                    status,
                )

    async def recover(self) -> None:
        """Take over 'preparing'/'uploaded' rows whose submitter died (lease expired)."""
        async with transaction(self.pool) as conn:
            rows = await conn.fetch(
                """UPDATE openai_batches SET lease_owner = $2,
                          lease_until = now() + make_interval(secs => $3)
                   WHERE id IN (SELECT id FROM openai_batches
                                WHERE stage = $1 AND status IN ('preparing', 'uploaded')
                                  AND lease_until < now()
                                ORDER BY id LIMIT 20 FOR UPDATE SKIP LOCKED)
                   RETURNING id, status, input_file_id, uploaded_at, cancel_requested""",
                self.stage,
                self.me,
                self.opts.submit_lease_s,
            )
        for row in rows:
            if row["status"] == "preparing":
                await self.abandon(row["id"], "submitter died before the upload was recorded", None)
                continue
            found = await self.find_batch(row["input_file_id"], row["uploaded_at"])
            if found is not None:
                await self.record(row["id"], found)
            elif row["cancel_requested"]:
                await self.abandon(row["id"], "job cancelled before the batch was created", None)
            else:
                await self.create(row["id"], row["input_file_id"])

    async def find_batch(self, file_id: str, uploaded_at: datetime) -> Batch | None:
        """The batch created from ``file_id``, if a create succeeded whose answer was lost.

        Batches are listed newest first; the scan stops at batches created well before the file
        (the file's own ``created_at``, so both times come from OpenAI's clock) or after 5,000.
        """
        try:
            horizon = float((await self.client.files.retrieve(file_id)).created_at) - 3600
        except openai.NotFoundError:
            horizon = uploaded_at.timestamp() - 6 * 3600
        seen = 0
        async for batch in self.client.batches.list(limit=100):
            if batch.input_file_id == file_id:
                return batch
            seen += 1
            if batch.created_at < horizon or seen >= 5_000:
                break
        return None


def _transient(exc: openai.APIStatusError) -> bool:
    return exc.status_code in (408, 409, 429) or exc.status_code >= 500


def _error_of(exc: openai.APIStatusError) -> LineError:
    return LineError(
        code=str(exc.code or f"http_{exc.status_code}"),
        message=exc.message,
        status_code=exc.status_code,
        param=exc.param,
    )
