"""Settling one batch line or one item of a failed batch (the rules of gen_common.openai_batch).

A line is failed when ``error`` is set or ``response.status_code >= 400``. Retryable failures
(429, 5xx, timeouts) are requeued while ``attempt < max_attempts``; everything else goes to the
stage's ``fail()``, whose own rules decide (e.g. drop an unreachable image and requeue).
"""

from __future__ import annotations

from typing import Any

import asyncpg
from openai.types import Batch

from gen_common.batch_options import BatchOptions
from gen_common.batch_source import BatchSource, LineError
from gen_common.db import Conn

TERMINAL = ("completed", "failed", "expired", "cancelled")
SKIPPED = ("batch_expired", "batch_cancelled")


async def settle_failure(
    conn: Conn, source: BatchSource, opts: BatchOptions, work_id: int, attempt: int, err: LineError
) -> str:
    """Retry a retryable failure while attempts remain, else hand it to the stage's fail()."""
    if err.retryable and attempt < opts.max_attempts:
        await source.retry(conn, work_id, delay_s=opts.retry_delay(attempt), error=err)
        return "retried"
    await source.fail(conn, work_id, err)
    return "failed"


def line_error(line: dict[str, Any]) -> LineError | None:
    """None for a successful line; a line failed if ``error`` is set or status_code >= 400."""
    error = line.get("error")
    if error:
        return LineError(code=str(error.get("code") or "error"), message=str(error.get("message")))
    response = line.get("response") or {}
    status = response.get("status_code")
    if isinstance(status, int) and status < 400:
        return None
    body = response.get("body")
    detail = body.get("error") if isinstance(body, dict) else None
    detail = detail if isinstance(detail, dict) else {}
    return LineError(
        code=str(detail.get("code") or detail.get("type") or f"http_{status}"),
        message=str(detail.get("message") or ""),
        status_code=status if isinstance(status, int) else None,
        param=detail.get("param"),
    )


class FailedBatch:
    """A batch that failed validation: token limit -> release with backoff; bad lines -> fail
    those, release the others; a file-level error -> retry (bounded by attempts)."""

    def __init__(self, batch: Batch) -> None:
        errors = list(batch.errors.data or []) if batch.errors else []
        self.token_limit = any(e.code == "token_limit_exceeded" for e in errors)
        self.by_line = {e.line: e for e in errors if e.line is not None}
        first = errors[0] if errors else None
        self.general = LineError(
            code=str(first.code if first else "batch_failed"),
            message=str(first.message if first else "batch failed without errors"),
            status_code=500,  # retryable: a file-level failure is ours, not the item's
        )
        self.summary = f"{self.general.code}: {self.general.message}"[:2000]

    async def settle(
        self, conn: Conn, opts: BatchOptions, source: BatchSource, item: asyncpg.Record
    ) -> tuple[str, LineError | None, float]:
        if self.token_limit:
            return "released", self.general, opts.token_limit_backoff_s
        bad = self.by_line.get(item["line_no"])
        if bad is not None:
            err = LineError(str(bad.code), str(bad.message), status_code=400, param=bad.param)
            await source.fail(conn, item["work_id"], err)
            return "failed", err, 0.0
        if self.by_line:
            return "released", None, 0.0
        status = await settle_failure(
            conn, source, opts, item["work_id"], item["attempt"], self.general
        )
        return status, self.general, 0.0
