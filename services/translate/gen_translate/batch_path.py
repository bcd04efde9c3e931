"""The translate stage's Batch API path: a :class:`gen_common.openai_batch.BatchSource` over the
``translate_work`` rows of large batch-mode jobs (``jobs.mode = 'batch'`` and more than
``min_lots`` lots, the rule vision uses to route a job to its batch path).

The realtime workers must then skip those rows: claim with ``where=realtime_where(min_lots)``.
Each (lot, language) is one line; the request is the one :class:`OpenAIDescriber` sends, so batch
translations are parsed as Responses (``output_text``, never Chat Completions: bug B4) and stored
through :func:`gen_translate.finish.record_outcome`, which emits LotTranslated once the lot has
every language. Cost: the price table times the Batch API's ``price_factor`` (50 %).
"""

from __future__ import annotations

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

from gen_translate import finish, handler, store
from gen_translate.describe import cost_usd, packaged_prompt, request_input, translation_of
from gen_translate.results import Outcome
from gen_translate.settings import TranslateOptions

STAGE = "translate"


def where(min_lots: int) -> str:
    """The batch path's rows (``min_lots`` is an int: safe to inline)."""
    return (
        "priority = 1 AND job_id IN (SELECT job_id FROM jobs WHERE mode = 'batch' "
        f"AND total_lots > {int(min_lots)})"
    )


def realtime_where(min_lots: int) -> str:
    """For the realtime workers' ``jobs.claim(..., where=...)``: everything else."""
    return f"NOT ({where(min_lots)})"


class TranslateBatchSource(TableBackedSource):
    def __init__(self, pool: asyncpg.Pool, *, options: TranslateOptions, min_lots: int) -> None:
        self._pool, self._o = pool, options
        self._where = where(min_lots)
        self._instructions = options.instructions or packaged_prompt()
        self._table = JobsTable(store.WORK, STAGE)

    @property
    def stage(self) -> str:
        return STAGE

    async def claim(
        self, conn: Conn, *, owner: str, lease_s: float, limit: int
    ) -> list[BatchRequest]:
        rows = await self._table.claim(
            conn, owner=owner, lease_s=lease_s, limit=limit, where=self._where
        )
        return [BatchRequest(r["id"], str(r["job_id"]), r["attempts"], {}) for r in rows]

    async def prepare(self, requests: Sequence[BatchRequest]) -> list[BatchRequest | Rejected]:
        rows = await self._pool.fetch(
            """SELECT w.id, w.job_id, w.lot_seq, w.language, l.description_en, l.cancelled
               FROM translate_work w
               LEFT JOIN translate_lots l ON l.job_id = w.job_id AND l.lot_seq = w.lot_seq
               WHERE w.id = ANY($1::bigint[])""",
            [r.work_id for r in requests],
        )
        by_id = {r["id"]: r for r in rows}
        out: list[BatchRequest | Rejected] = []
        for request in requests:
            row = by_id.get(request.work_id)
            if row is None or row["description_en"] is None or row["cancelled"]:
                out.append(Rejected(request, LineError("cancelled", "lot cancelled or unknown")))
                continue
            body = self._body(row)
            out.append(BatchRequest(request.work_id, request.job_id, request.attempt, body))
        return out

    def _body(self, row: asyncpg.Record) -> dict[str, Any]:
        o = self._o
        body: dict[str, Any] = {
            "model": o.model,
            "instructions": self._instructions,
            "input": request_input(row["description_en"], row["language"]),
            "max_output_tokens": o.max_output_tokens,
            "store": False,
            "metadata": {
                "job_id": str(row["job_id"]),
                "lot_seq": str(row["lot_seq"]),
                "target_language": row["language"],
            },
        }
        if o.reasoning_effort:
            body["reasoning"] = {"effort": o.reasoning_effort}
        return body

    async def complete(
        self, conn: Conn, work_id: int, response: Response, usage: BatchUsage
    ) -> None:
        row = await self._table.row(conn, work_id)
        if row is None:
            return  # cancelled or taken over meanwhile
        text = translation_of(response)  # InvalidModelOutput (refusal, incomplete) -> fail()
        tokens = TokenUsage(
            input_tokens=usage.input_tokens,
            cached_tokens=usage.cached_tokens,
            output_tokens=usage.output_tokens,
            reasoning_tokens=usage.reasoning_tokens,
        )
        price = self._o.prices.get(self._o.model) or self._o.prices.get(response.model)
        cost = round(cost_usd(tokens, price) * usage.price_factor, 6)
        if not await self._table.finish(conn, work_id):
            return
        outcome = Outcome(
            row["job_id"],
            row["lot_seq"],
            row["language"],
            "translated",
            text=text,
            model=response.model,
            response_id=response.id,
            usage=tokens.model_copy(update={"cost_usd": cost}),
        )
        await finish.record_outcome(conn, outcome)

    async def fail(self, conn: Conn, work_id: int, error: LineError) -> None:
        row = await self._table.row(conn, work_id)
        if row is None:
            return
        if error.code == "cancelled":  # like the realtime worker: no outcome for a cancelled lot
            await self._table.fail(conn, work_id, "cancelled")
            return
        code = error.code
        if error.status_code not in (None, 200):
            code = f"openai_{error.status_code}"
        if await self._table.fail(conn, work_id, f"{error.code}: {error.message}"):
            outcome = Outcome(
                row["job_id"], row["lot_seq"], row["language"], "failed", error_code=code
            )
            await finish.record_outcome(conn, outcome)


async def on_control(event: JobCancelRequested, conn: Conn) -> None:
    """jobs.control: the realtime handler's cancel, plus the batch rows and OpenAI batches."""
    await handler.on_control(event, conn)
    await cancel_batch_work(conn, event.job_id)


async def cancel_batch_work(conn: Conn, job_id: uuid.UUID) -> None:
    await JobsTable(store.WORK, STAGE).cancel_held(conn, job_id)
    await openai_batch.request_cancel(conn, str(job_id))
