"""The vision stage's Batch API path: a :class:`gen_common.openai_batch.BatchSource` over the
``vision_work`` rows with ``path = 'batch'`` (large batch-mode jobs, see handler.on_submitted).

- prepare (outside any transaction): the same image checks as the realtime path (SSRF guard,
  HEAD / ranged GET, threshold); the lot's ``missing_images`` is written on the lots row at once;
  a lot above the threshold is rejected (-> LotFailed image_unreachable); every valid image not
  refused earlier is attached to the request the realtime assessor would send.
- complete: the answer is validated and rendered exactly like a realtime answer, costed at
  ``batch_discount`` of the price, stored with ``via_batch`` and announced (LotAssessed).
- fail: a 400 image download error line refuses that image and requeues the lot (up to
  ``image_retries``, within the threshold), an invalid answer is retried up to
  ``invalid_output_attempts``; anything else fails the lot (LotFailed stage vision).
- on_cancel: for the jobs.control subscription (cancels queued work, the rows the engine holds,
  and the job's OpenAI batches, the remote cancel being sent by the monitor).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
from gen_common import openai_batch
from gen_common.batch_jobs import JobsTable, TableBackedSource
from gen_common.db import Conn
from gen_common.events import JobCancelRequested, TokenUsage
from gen_common.openai_batch import BatchRequest, BatchUsage, LineError, Rejected
from openai.types.responses import Response

from gen_vision import handler, results, store
from gen_vision.assess import OpenAIAssessor, cost_usd
from gen_vision.images import ImagesUnreachable, enforce_threshold
from gen_vision.lot_request import LotRequest, result_of
from gen_vision.settings import VisionOptions
from gen_vision.worker import Checker

STAGE = "vision"
WHERE = "path = 'batch'"
PREPARE_SLICE = 500
_URL = re.compile(r"download(?:ing)?\s+(\S+?)\.?(?:\s|$)", re.I)


def _lot(work: asyncpg.Record, missing_all: Sequence[str]) -> LotRequest:
    """The lot as it was sent: every image not missing by our checks and not refused by OpenAI."""
    urls = list(work["images"])
    refused = [u for u in work["refused_images"] if u in urls]
    gone = set(missing_all) | set(refused)
    return LotRequest(
        job_id=str(work["job_id"]),
        lot_seq=work["lot_seq"],
        lot_id=work["lot_id"],
        all_images=urls,
        images=[u for u in dict.fromkeys(urls) if u not in gone],
        missing=[u for u in missing_all if u not in refused],
        additional_info=work["additional_info"],
        refused=refused,
    )


class VisionBatchSource(TableBackedSource):
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        checker: Checker,
        assessor: OpenAIAssessor,
        options: VisionOptions,
    ) -> None:
        self._pool, self._checker, self._assessor, self._o = pool, checker, assessor, options
        self._table = JobsTable(store.TABLE, STAGE)

    @property
    def stage(self) -> str:
        return STAGE

    async def claim(
        self, conn: Conn, *, owner: str, lease_s: float, limit: int
    ) -> list[BatchRequest]:
        rows = await self._table.claim(conn, owner=owner, lease_s=lease_s, limit=limit, where=WHERE)
        return [BatchRequest(r["id"], str(r["job_id"]), r["attempts"], {}) for r in rows]

    async def prepare(self, requests: Sequence[BatchRequest]) -> list[BatchRequest | Rejected]:
        out: list[BatchRequest | Rejected] = []
        for start in range(0, len(requests), PREPARE_SLICE):
            part = requests[start : start + PREPARE_SLICE]
            rows = await self._pool.fetch(
                "SELECT * FROM vision_work WHERE id = ANY($1::bigint[])", [r.work_id for r in part]
            )
            by_id = {r["id"]: r for r in rows}
            out += await asyncio.gather(*(self._prepare_one(r, by_id[r.work_id]) for r in part))
        return out

    async def _prepare_one(
        self, request: BatchRequest, work: asyncpg.Record
    ) -> BatchRequest | Rejected:
        check = await self._checker.check_lot(list(work["images"]))
        lot = _lot(work, check.missing)
        async with self._pool.acquire() as conn:
            await results.set_missing_images(
                conn, work["job_id"], work["lot_seq"], lot.missing_images
            )
        try:
            enforce_threshold(lot.all_images, lot.missing_images, self._o.images.max_unreachable)
        except ImagesUnreachable as exc:
            return Rejected(request, LineError(exc.code, str(exc)))
        body: dict[str, Any] = self._assessor.request(lot)
        return BatchRequest(request.work_id, request.job_id, request.attempt, body)

    async def complete(
        self, conn: Conn, work_id: int, response: Response, usage: BatchUsage
    ) -> None:
        work = await self._table.row(conn, work_id)
        if work is None:
            return  # cancelled or taken over meanwhile: nothing to store
        lot = _lot(work, await self._missing(conn, work))
        tokens = TokenUsage(
            input_tokens=usage.input_tokens,
            cached_tokens=usage.cached_tokens,
            output_tokens=usage.output_tokens,
            reasoning_tokens=usage.reasoning_tokens,
        )
        price = self._o.prices.get(self._o.model)
        cost = cost_usd(tokens, price, discount=self._o.batch_discount)
        priced = tokens.model_copy(update={"cost_usd": cost})
        result = result_of(response, lot, priced)  # InvalidModelOutput -> fail()
        if not await self._table.finish(conn, work_id):
            return
        ref = handler.LotRef.of(work)
        await handler.record_assessed(
            conn, ref, result, missing_images=lot.missing_images, via_batch=True
        )

    async def fail(self, conn: Conn, work_id: int, error: LineError) -> None:
        work = await self._table.row(conn, work_id)
        if work is None:
            return
        o = self._o
        missing = await self._missing(conn, work)
        if error.image_error:
            match = _URL.search(error.message)
            url = match.group(1) if match else None
            refused = list(work["refused_images"])
            if url and url in work["images"] and url not in refused:
                refused.append(url)
                missing = list(dict.fromkeys([*missing, url]))
                try:
                    enforce_threshold(list(work["images"]), missing, o.images.max_unreachable)
                    if len(refused) <= o.image_retries:
                        await self._requeue(conn, work, error, refused=refused)
                        return
                except ImagesUnreachable:
                    pass
            reason = "image_unreachable"
        elif (
            error.code == "invalid_model_output"
            and work["invalid_outputs"] + 1 < o.invalid_output_attempts
        ):
            await self._requeue(conn, work, error, invalid=True)
            return
        elif error.status_code is None or error.status_code == 200:
            reason = error.code
        else:
            reason = f"openai_{error.status_code}"
        if await self._table.fail(conn, work_id, f"{error.code}: {error.message}"):
            await handler.record_failed(
                conn,
                handler.LotRef.of(work),
                reason=reason,
                message=error.message,
                missing_images=missing,
            )

    async def _requeue(
        self,
        conn: Conn,
        work: asyncpg.Record,
        error: LineError,
        *,
        refused: list[str] | None = None,
        invalid: bool = False,
    ) -> None:
        if await self._table.retry(conn, work["id"], delay_s=0.0, error=error):
            await store.note_attempt(
                conn,
                work_id=work["id"],
                refused=refused if refused is not None else list(work["refused_images"]),
                invalid_output=invalid,
                give_back_attempt=not invalid,
            )

    async def _missing(self, conn: Conn, work: asyncpg.Record) -> list[str]:
        missing: list[str] | None = await conn.fetchval(
            "SELECT missing_images FROM lots WHERE job_id = $1 AND lot_seq = $2",
            work["job_id"],
            work["lot_seq"],
        )
        return list(missing or [])


async def on_cancel(event: JobCancelRequested, conn: Conn) -> None:
    """jobs.control: the realtime handler's cancel, plus the batch rows and OpenAI batches."""
    await handler.on_cancel(event, conn)
    await cancel_batch_work(conn, event.job_id)


async def cancel_batch_work(conn: Conn, job_id: uuid.UUID) -> None:
    await JobsTable(store.TABLE, STAGE).cancel_held(conn, job_id)
    await openai_batch.request_cancel(conn, str(job_id))
