"""Claim due items, pack them into JSONL files and submit them as OpenAI batches, crash-safe.

1. Transaction: ``source.claim`` (lease ``claim_lease_s``). Nothing else is written yet: a crash
   here leaves rows the stage's reaper requeues when the short lease expires.
2. ``source.prepare`` outside any transaction (the stage's I/O, e.g. image checks).
3. Transaction: ``source.hold`` extends the lease past the 24 h window for the rows still held;
   rejected items are settled; the rest are packed (one job and one model per file, lines, bytes,
   the model's enqueued-token budget under a per-model advisory lock so concurrent processes
   never overbook it), and each file becomes an ``openai_batches`` row ('preparing', leased to
   this process) with its ``openai_batch_items``. Items over the budget are released.
4. Upload and create: :mod:`gen_common.batch_remote` (recorded before and after each call).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg
import openai

from gen_common.batch_lines import settle_failure
from gen_common.batch_pack import Chunk, Packed, inflight_tokens, line, pack
from gen_common.batch_remote import BatchRemote
from gen_common.batch_source import BatchRequest, Rejected, batch_owner
from gen_common.db import Conn, transaction

log = logging.getLogger(__name__)


class Submitter(BatchRemote):
    """The claim/prepare/pack loop of one stage in one process."""

    async def loop(self) -> None:
        while True:
            state = "idle"
            try:
                await self.recover()
                state = await self.submit_once()
            except (openai.APIError, asyncpg.PostgresError, OSError) as exc:
                log.warning("batch submit tick failed", extra={"error": repr(exc)})
            if state == "more":
                continue
            if state == "blocked":  # wait for a batch to finish and free token budget
                self.finished.clear()
                wait = self.opts.submit_interval_s * 6
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.finished.wait(), wait)
                continue
            await asyncio.sleep(self.opts.submit_interval_s)

    async def submit_once(self) -> str:
        limit = self.opts.claim_limit
        owner = batch_owner(self.stage)
        async with transaction(self.pool) as conn:
            claimed = await self.source.claim(
                conn, owner=owner, lease_s=self.opts.claim_lease_s, limit=limit
            )
        if not claimed:
            return "idle"
        prepared = await self._prepare(claimed)
        async with transaction(self.pool) as conn:
            held = await self.source.hold(
                conn,
                [p.work_id if isinstance(p, BatchRequest) else p.request.work_id for p in prepared],
                owner=owner,
                lease_s=self.opts.item_lease_s,
            )
            requests = [p for p in prepared if isinstance(p, BatchRequest) and p.work_id in held]
            for p in prepared:
                if isinstance(p, Rejected) and p.request.work_id in held:
                    r = p.request
                    await settle_failure(
                        conn, self.source, self.opts, r.work_id, r.attempt, p.error
                    )
            packed = await self._pack(conn, requests)
            prepared_files = [await self._insert(conn, chunk) for chunk in packed.chunks]
        for row_id, data in prepared_files:
            await self.send(row_id, data)
        if packed.leftover:
            return "blocked"
        return "more" if len(claimed) >= limit else "idle"

    async def _prepare(self, claimed: list[BatchRequest]) -> list[BatchRequest | Rejected]:
        """The stage's I/O step; if it breaks, the claimed rows go straight back."""
        done = False
        try:
            prepared = await self.source.prepare(claimed)
            done = True
            return prepared
        finally:
            if not done:
                async with transaction(self.pool) as conn:
                    await self.source.release(
                        conn,
                        [r.work_id for r in claimed],
                        delay_s=self.opts.submit_interval_s,
                        reason="prepare failed",
                    )

    async def _pack(self, conn: Conn, requests: list[BatchRequest]) -> Packed:
        models = sorted({m for r in requests if isinstance(m := r.body.get("model"), str)})
        budget = {}
        for model in models:  # serialises the enqueued-token budget of a model across processes
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"oab:{model}")
            budget[model] = self.opts.token_cap(model) - await inflight_tokens(conn, model)
        packed = pack(requests, self.opts, budget)
        for req, error in packed.rejected:
            await self.source.fail(conn, req.work_id, error)
        if packed.leftover:
            await self.source.release(
                conn,
                [r.work_id for r in packed.leftover],
                delay_s=0.0,
                reason="enqueued token budget full",
            )
        return packed

    async def _insert(self, conn: Conn, chunk: Chunk) -> tuple[int, bytes]:
        row_id: int = await conn.fetchval(
            """INSERT INTO openai_batches (stage, model, job_id, line_count, input_bytes,
                   est_tokens, lease_owner, lease_until)
               VALUES ($1, $2, $3, $4, $5, $6, $7, now() + make_interval(secs => $8))
               RETURNING id""",
            self.stage,
            chunk.model,
            chunk.job_id,
            len(chunk.items),
            chunk.size,
            chunk.tokens,
            self.me,
            self.opts.submit_lease_s,
        )
        lines, records = [], []
        for line_no, (req, body) in enumerate(chunk.items, start=1):
            custom_id = f"{self.stage}-{row_id}-{req.work_id}"
            lines.append(line(custom_id, body))
            records.append((row_id, req.work_id, custom_id, line_no, req.attempt))
        await conn.copy_records_to_table(
            "openai_batch_items",
            records=records,
            columns=["batch_row", "work_id", "custom_id", "line_no", "attempt"],
        )
        data = b"\n".join(lines) + b"\n"
        await conn.execute(
            "UPDATE openai_batches SET input_bytes = $2 WHERE id = $1", row_id, len(data)
        )
        return row_id, data
