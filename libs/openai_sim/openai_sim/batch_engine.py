"""The Batch lifecycle on the simulated clock; work happens lazily, in chunks, when refreshed.

validating → failed | in_progress → finalizing → completed; in_progress → expired;
validating | in_progress → cancelling → cancelled (openai-reference §4.5).
"""

from __future__ import annotations

import asyncio
import zlib
from typing import Any

from openai_sim import batch_lines as bl
from openai_sim.batch_model import Batch
from openai_sim.clock import SimClock
from openai_sim.file_store import FileStore
from openai_sim.models import MODELS
from openai_sim.tokens import PromptCache, image_tokens

ACTIVE = ("validating", "in_progress", "finalizing", "cancelling")


class BatchEngine:
    def __init__(self, *, cfg: dict[str, Any], clock: SimClock, files: FileStore) -> None:
        self.cfg = cfg
        self.clock = clock
        self.files = files
        self.batches: dict[str, Batch] = {}
        self.cache = PromptCache(ttl_s=cfg["cache"]["ttl_s"], max_entries=10_000)

    @property
    def bc(self) -> dict[str, Any]:
        return self.cfg["batch"]  # type: ignore[no-any-return]

    async def refresh(self, batch: Batch, run: bl.LineRunner) -> None:
        async with batch.lock:
            now = self.clock.now()
            if batch.status == "validating" and now >= batch.created_at + self.bc["validating_s"]:
                await self._validate(batch, batch.created_at + self.bc["validating_s"])
            if batch.status == "in_progress":
                await self._progress(batch, now, run)
            if (
                batch.status == "finalizing"
                and now >= batch.finalizing_at + self.bc["finalizing_s"]
            ):
                self._finish(batch, "completed", batch.finalizing_at + self.bc["finalizing_s"])
            if (
                batch.status == "cancelling"
                and now >= batch.cancelling_at + self.bc["cancelling_s"]
            ):
                self._skip_rest(batch, "batch_cancelled", bl.CANCELLED)
                self._finish(batch, "cancelled", batch.cancelling_at + self.bc["cancelling_s"])

    async def cancel(self, batch: Batch, run: bl.LineRunner) -> None:
        await self.refresh(batch, run)
        async with batch.lock:
            batch.status = "cancelling"
            batch.cancelling_at = self.clock.now()
        await self.refresh(batch, run)

    def _enqueued(self, model: str, exclude: Batch) -> int:
        return sum(
            b.enqueued_tokens
            for b in self.batches.values()
            if b is not exclude and b.model == model and b.status in ACTIVE[1:]
        )

    async def _validate(self, batch: Batch, at: float) -> None:
        data = self.files.get(batch.input_file_id).data
        parsed = bl.Parsed()
        errors = bl.file_errors(data, max_bytes=int(self.bc["max_file_bytes"]))
        if not errors:
            lines = data.splitlines()
            limit = int(self.bc["max_tasks"])
            count = sum(1 for line in lines if line.strip())
            if count > limit:
                errors = [bl.too_many(count, limit)]
            else:
                seen: set[str] = set()
                chunk = int(self.bc["chunk_lines"]) * 4
                for number, raw in enumerate(lines, start=1):
                    if raw.strip():
                        bl.check_line(parsed, seen, number=number, raw=raw, endpoint=batch.endpoint)
                    if number % chunk == 0:
                        await asyncio.sleep(0)
                errors = parsed.errors
        batch.model = parsed.model
        if not errors and parsed.model is not None:
            batch.enqueued_tokens = self._estimate(parsed)
            limits = self.bc["enqueued_token_limits"]
            limit = int(limits.get(parsed.model, self.bc["default_enqueued_token_limit"]))
            if self._enqueued(parsed.model, batch) + batch.enqueued_tokens > limit:
                errors = [
                    bl.batch_error(
                        "token_limit_exceeded",
                        f"Enqueued token limit reached for {parsed.model} in organization "
                        f"{self.cfg['organization']}. Limit: {limit:,} enqueued tokens. Please try "
                        "again once some in_progress batches have been completed.",
                    )
                ]
        if errors:
            batch.enqueued_tokens = 0
            batch.errors = {"object": "list", "data": errors}
            batch.status, batch.failed_at = "failed", at
            return
        batch.tasks = parsed.tasks
        batch.total = len(parsed.tasks)
        batch.status, batch.in_progress_at = "in_progress", at

    def _estimate(self, parsed: bl.Parsed) -> int:
        """Enqueued prompt tokens: bytes / 4 plus a high-detail image cost per input_image."""
        model = MODELS.get(parsed.model or "")
        images = self.cfg["images"]
        per_image = 1_244
        if model is not None:
            per_image = image_tokens(
                model, "high", images["assumed_width"], images["assumed_height"]
            )
        return sum(
            len(raw) // 4 + raw.count(b'"input_image"') * per_image for _, raw in parsed.tasks
        )

    async def _progress(self, batch: Batch, now: float, run: bl.LineRunner) -> None:
        rate = float(self.bc["lines_per_sim_second"])
        total = len(batch.tasks)
        end = min(now, batch.expires_at)
        target = min(total, int((end - batch.in_progress_at) * rate))
        chunk = int(self.bc["chunk_lines"])
        while batch.done < target:
            stop = min(target, batch.done + chunk)
            for custom_id, raw in batch.tasks[batch.done : stop]:
                ok, line, usage = bl.run_line(custom_id, raw, run)
                batch.record(custom_id, ok, line, usage)
            batch.done = stop
            await asyncio.sleep(0)
        if batch.done >= total:
            batch.status = "finalizing"
            batch.finalizing_at = batch.in_progress_at + (total / rate if rate else 0.0)
        elif now >= batch.expires_at:
            self._skip_rest(batch, "batch_expired", bl.EXPIRED)
            self._finish(batch, "expired", batch.expires_at)

    def _skip_rest(self, batch: Batch, code: str, message: str) -> None:
        for custom_id, _raw in batch.tasks[batch.done :]:
            batch.record(custom_id, False, bl.skipped_line(custom_id, code, message), {})
        batch.done = len(batch.tasks)

    def _finish(self, batch: Batch, status: str, at: float) -> None:
        for kind, lines in (("output", batch.out), ("error", batch.err)):
            if not lines:
                continue
            lines.sort(key=lambda item: zlib.crc32(item[0].encode()))
            data = b"\n".join(line for _, line in lines) + b"\n"
            stored = self.files.add(
                filename=f"{batch.id}_{kind}.jsonl", purpose="batch_output", data=data
            )
            if kind == "output":
                batch.output_file_id = stored.id
            else:
                batch.error_file_id = stored.id
        batch.out, batch.err, batch.tasks = [], [], []
        batch.enqueued_tokens = 0
        batch.status = status
        setattr(batch, f"{status}_at", at)
