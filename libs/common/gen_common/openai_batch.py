"""The OpenAI Batch API engine, shared by every stage that sends /v1/responses requests.

A stage implements :class:`BatchSource` over its work table and runs :func:`run` next to its
realtime workers. The engine claims the stage's due batch-mode items, packs them into JSONL files
(one job and one model per file; at most ``max_lines`` lines, ``max_bytes`` bytes and the model's
enqueued-token cap minus what is already in flight), uploads each file, creates the batch, polls
it, maps every output/error line back to its work item by ``custom_id`` and hands the result to
the stage. Everything is recorded in ``openai_batches`` / ``openai_batch_items`` (migration 0250)
before and after each remote call (:mod:`gen_common.batch_submit`, :mod:`gen_common.batch_remote`);
a process leases the rows it submits or polls, so two processes never handle the same batch.

One job per file: a job's batches hold only its items, so :func:`cancel_job` cancels exactly the
job's batches and never another job's lines (a big job may still span several files).

Line rules (:mod:`gen_common.batch_lines`): a line is failed when ``error`` is set or
``response.status_code >= 400``. ``batch_expired`` lines and lines skipped by a cancel we did not
ask for go back to the stage at once without counting an attempt (:meth:`BatchSource.release`);
429/5xx lines are retried in a later batch with backoff while ``attempt < max_attempts``;
every other failure (including the 400 "Error while downloading <url>" image errors) goes to
:meth:`BatchSource.fail` with the classified :class:`LineError`, and the stage's own rules decide
(e.g. drop the image and requeue, or fail the lot). A batch that fails with
``token_limit_exceeded`` releases its items with ``token_limit_backoff_s``; other validation
failures fail the lines they name and release the rest. A batch still running ``stuck_grace_s``
after its 24 h window is cancelled by the monitor and its unfinished lines are sent again (B19).
Cost: :class:`BatchUsage` carries each item's tokens and ``price_factor`` 0.5 for the stage.

custom_id is ``<stage>-<batch row id>-<work row id>``: built only from integers and the stage's
identifier, so it is unique for ANY client lot_id (nothing is ever split out of a client id).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg
import openai
from openai import AsyncOpenAI
from openai.types.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from gen_common.db import Conn, transaction

log = logging.getLogger(__name__)
BATCH_PRICE_FACTOR = 0.5  # Batch API bills at 50 % of the standard price (openai-reference §4.7)
_STAGE = re.compile(r"^[a-z][a-z0-9_]{0,30}$")


class BatchOptions(BaseModel):
    """Engine settings; a stage embeds it as e.g. ``VisionOptions.batch`` (env VISION__BATCH__…)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_lines: int = Field(default=50_000, ge=1, le=50_000)
    max_bytes: int = Field(default=190 * 1024 * 1024, ge=1024, le=200 * 1024 * 1024)
    enqueued_token_limits: dict[str, int] = Field(default_factory=dict, description="per model")
    default_enqueued_token_limit: int = Field(default=2_000_000, ge=1)
    tokens_per_image: int = Field(default=1_300, ge=0, description="enqueued-token estimate")
    claim_limit: int = Field(default=50_000, ge=1)
    submit_interval_s: float = Field(default=10.0, gt=0)
    poll_interval_s: float = Field(default=60.0, gt=0)
    claim_lease_s: float = Field(default=1800.0, gt=0, description="claim -> prepare -> hold")
    submit_lease_s: float = Field(default=600.0, gt=0)
    poll_lease_s: float = Field(default=600.0, gt=0)
    item_lease_s: float = Field(default=30 * 3600.0, gt=0)
    max_attempts: int = Field(default=3, ge=1)
    retry_delays_s: tuple[float, ...] = (60.0, 300.0, 1800.0)
    token_limit_backoff_s: float = Field(default=300.0, ge=0)
    file_expiry_s: int = Field(default=7 * 86_400, ge=3_600, le=2_592_000)
    stuck_grace_s: float = Field(default=2 * 3600.0, gt=0)
    apply_chunk: int = Field(default=500, ge=1)

    def token_cap(self, model: str) -> int:
        return self.enqueued_token_limits.get(model, self.default_enqueued_token_limit)

    def retry_delay(self, attempt: int) -> float:
        delays = self.retry_delays_s or (60.0,)
        return delays[min(max(attempt, 1), len(delays)) - 1]


@dataclass(frozen=True, slots=True)
class BatchRequest:
    """One claimed item: its work row, job, attempt number (1 = first) and /v1/responses body."""

    work_id: int
    job_id: str
    attempt: int
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class LineError:
    """A failed line. ``status_code`` is None for non-HTTP failures (batch_expired, …)."""

    code: str
    message: str
    status_code: int | None = None
    param: str | None = None

    @property
    def retryable(self) -> bool:
        if self.status_code is not None:
            return self.status_code in (408, 409, 429) or self.status_code >= 500
        return self.code in ("server_error", "timeout", "rate_limit_exceeded")

    @property
    def image_error(self) -> bool:
        """400 image download/format problem (openai-reference §5.5): the stage drops the image."""
        if self.status_code != 400:
            return False
        code = self.code or ""
        return (
            code in ("invalid_image_url", "failed_to_download_image")
            or code.startswith(("invalid_image", "image_"))
            or (code == "invalid_value" and self.param == "url")
            or "downloading" in self.message
        )


@dataclass(frozen=True, slots=True)
class BatchUsage:
    """Tokens of one item; cost = standard price x ``price_factor`` (batch is 50 %)."""

    input_tokens: int
    cached_tokens: int
    output_tokens: int
    reasoning_tokens: int
    price_factor: float = BATCH_PRICE_FACTOR

    @classmethod
    def of(cls, response: Response) -> BatchUsage:
        usage = response.usage
        if usage is None:
            return cls(0, 0, 0, 0)
        return cls(
            input_tokens=usage.input_tokens,
            cached_tokens=usage.input_tokens_details.cached_tokens,
            output_tokens=usage.output_tokens,
            reasoning_tokens=usage.output_tokens_details.reasoning_tokens,
        )


@dataclass(frozen=True, slots=True)
class Rejected:
    """An item :meth:`BatchSource.prepare` will not send (e.g. its images are unreachable)."""

    request: BatchRequest
    error: LineError


class BatchSource(Protocol):
    """What a stage gives the engine. Every method but ``prepare`` runs inside the engine's
    transaction, on rows held by ``owner`` (:func:`batch_owner`, stable across restarts).

    Flow: ``claim`` (short lease ``claim_lease_s``) -> ``prepare`` outside any transaction (I/O
    such as image checks) -> ``hold`` extends the lease past the 24 h window for the items that go
    into a file -> later exactly one of complete/retry/fail/release per item and line. The stage's
    jobs.control handler must mark its work rows of a cancelled job 'cancelled' itself (queued, or
    running under the batch owner) and call :func:`request_cancel` (or :func:`cancel_job`).
    """

    @property
    def stage(self) -> str: ...

    async def claim(
        self, conn: Conn, *, owner: str, lease_s: float, limit: int
    ) -> list[BatchRequest]:
        """Lease up to ``limit`` due batch-path items, highest priority first (body may be {})."""
        ...

    async def prepare(self, requests: Sequence[BatchRequest]) -> list[BatchRequest | Rejected]:
        """Build each /v1/responses body; may do I/O and write the stage's own state."""
        ...

    async def hold(
        self, conn: Conn, work_ids: Sequence[int], *, owner: str, lease_s: float
    ) -> set[int]:
        """Extend the lease of rows still held by ``owner``; returns their ids."""
        ...

    async def complete(
        self, conn: Conn, work_id: int, response: Response, usage: BatchUsage
    ) -> None:
        """Store one successful answer. Raise PermanentError/RetryableError for a bad answer."""
        ...

    async def retry(self, conn: Conn, work_id: int, *, delay_s: float, error: LineError) -> None:
        """Requeue for a later batch after ``delay_s`` (the attempt counts)."""
        ...

    async def fail(self, conn: Conn, work_id: int, error: LineError) -> None:
        """The engine gives up on this line; the stage's rules decide (fail the lot, or requeue)."""
        ...

    async def release(
        self, conn: Conn, work_ids: Sequence[int], *, delay_s: float, reason: str
    ) -> None:
        """Requeue without counting an attempt (never sent, expired, token limit)."""
        ...


def batch_owner(stage: str) -> str:
    return f"openai_batch:{stage}"


def process_id() -> str:
    """This process's lease-owner name for batch rows."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def check_stage(stage: str) -> str:
    if not _STAGE.match(stage):
        raise ValueError(f"stage must match {_STAGE.pattern}: {stage!r}")
    return stage


async def run(
    pool: asyncpg.Pool, client: AsyncOpenAI, source: BatchSource, options: BatchOptions
) -> None:
    """Run the submitter and the monitor until cancelled (add it to the stage's TaskGroup)."""
    from gen_common.batch_monitor import Monitor
    from gen_common.batch_submit import Submitter

    check_stage(source.stage)
    finished = asyncio.Event()
    submitter = Submitter(pool, client, source, options, finished)
    monitor = Monitor(pool, client, source, options, finished)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(submitter.loop())
        tg.create_task(monitor.loop())


async def request_cancel(conn: Conn, job_id: str) -> list[str]:
    """Mark the job's open batches for cancellation and its pending items cancelled (DB only).

    Safe inside a consumer handler's transaction; the monitor sends the remote cancels. Returns
    the OpenAI batch ids to cancel now (when the caller can make remote calls).
    """
    await conn.execute(
        """UPDATE openai_batch_items SET status = 'cancelled', finished_at = now()
           WHERE status = 'pending' AND batch_row IN (
               SELECT id FROM openai_batches WHERE job_id = $1 AND status <> 'finished')""",
        job_id,
    )
    rows = await conn.fetch(
        """UPDATE openai_batches SET cancel_requested = true, next_poll_at = now()
           WHERE job_id = $1 AND status IN ('preparing', 'uploaded', 'submitted')
           RETURNING batch_id, remote_status""",
        job_id,
    )
    return [
        r["batch_id"]
        for r in rows
        if r["batch_id"] and r["remote_status"] in (None, "validating", "in_progress")
    ]


async def cancel_job(pool: asyncpg.Pool, client: AsyncOpenAI, job_id: str) -> int:
    """Cancel every in-flight OpenAI batch holding items of ``job_id``; returns how many."""
    async with transaction(pool) as conn:
        batch_ids = await request_cancel(conn, job_id)
    cancelled = 0
    for batch_id in batch_ids:
        try:
            await client.batches.cancel(batch_id)
            cancelled += 1
        except openai.APIError as exc:  # the monitor retries: cancel_requested stays set
            log.warning("batch cancel failed", extra={"batch_id": batch_id, "error": str(exc)})
    return cancelled
