"""What a stage gives the Batch API engine and gets back: the :class:`BatchSource` protocol, the
values that cross it (:class:`BatchRequest`, :class:`Rejected`, :class:`LineError`,
:class:`BatchUsage`) and the lease-owner names of the rows the engine holds.
"""

from __future__ import annotations

import os
import re
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from openai.types.responses import Response

from gen_common.db import Conn

BATCH_PRICE_FACTOR = 0.5  # Batch API bills at 50 % of the standard price (openai-reference §4.7)
_STAGE = re.compile(r"^[a-z][a-z0-9_]{0,30}$")


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
    running under the batch owner) and call :func:`gen_common.openai_batch.request_cancel` (or
    :func:`gen_common.openai_batch.cancel_job`).
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
