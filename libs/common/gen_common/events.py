"""The event contract between the stages: one pydantic model per event type and topic.

This module is the single source of ``schemas/*.json`` (``python -m gen_common.schemas``), and a
test fails when the two drift apart. Events are only ever extended with optional fields; any other
change is a new version (``.v2``) of the type.

Every lot event is keyed by the *lot key* ``"<job_id>:<lot_seq>"`` so one lot's events stay in
order on one partition; ``lot_seq`` is the lot's position in its job (client lot ids may repeat).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

LOTS_SUBMITTED = "lots.submitted"
LOTS_ASSESSED = "lots.assessed"
LOTS_TRANSLATED = "lots.translated"
LOTS_FAILED = "lots.failed"
JOBS_CONTROL = "jobs.control"
TOPICS = (LOTS_SUBMITTED, LOTS_ASSESSED, LOTS_TRANSLATED, LOTS_FAILED, JOBS_CONTROL)

LotId = Annotated[str | int, Field(description="the client's lot id, echoed with its JSON type")]
Mode = Literal["sync", "realtime", "batch"]
Language = Annotated[str, Field(min_length=1, max_length=35)]


def _now() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    """The envelope every event carries."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    type: str
    version: Literal[1] = 1
    occurred_at: datetime = Field(default_factory=_now)


class LotEvent(Event):
    job_id: uuid.UUID
    lot_seq: int = Field(ge=0, description="position of the lot in its job")
    lot_id: LotId

    @property
    def lot_key(self) -> str:
        return lot_key(self.job_id, self.lot_seq)


class TokenUsage(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    input_tokens: int = Field(default=0, ge=0)
    cached_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    reasoning_tokens: int = Field(default=0, ge=0)
    cost_usd: float = Field(default=0.0, ge=0)


class Description(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    language: Language
    damages: str = Field(description="HTML, <p> paragraphs")
    simulated: bool | None = Field(
        default=None, description="true when the OpenAI simulator, not OpenAI, produced it"
    )


class LotSubmitted(LotEvent):
    """A lot to assess. Produced by ingest, or directly by a client's own producer."""

    type: Literal["lot.submitted"] = "lot.submitted"
    images: list[Annotated[str, Field(max_length=4096)]] = Field(max_length=100)
    additional_info: str = Field(default="", max_length=100_000)
    languages: list[Language] = Field(min_length=1, max_length=50)
    mode: Mode = "realtime"
    total_lots: int = Field(default=1, ge=1, le=50_000, description="lots in the whole job")
    client_id: str = Field(default="direct", max_length=200)
    api_version: Literal[1, 2] = 1
    webhook: str | None = Field(default=None, max_length=2048, description="per-lot webhook URL")
    job_webhook_url: str | None = Field(default=None, max_length=2048)


class LotAssessed(LotEvent):
    """Vision's structured assessment and the English description of one lot."""

    type: Literal["lot.assessed"] = "lot.assessed"
    languages: list[Language] = Field(min_length=1)
    mode: Mode = "realtime"
    assessment: dict[str, object]
    description_en: str
    missing_images: list[str] = Field(default_factory=list)
    usage: TokenUsage = TokenUsage()


class LotTranslated(LotEvent):
    """Every requested description of one lot; ``en`` first."""

    type: Literal["lot.translated"] = "lot.translated"
    descriptions: list[Description] = Field(min_length=1)
    missing_images: list[str] = Field(default_factory=list)
    pending_languages: list[Language] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    usage: TokenUsage = TokenUsage()


class LotFailed(LotEvent):
    """A lot that cannot be completed, with the stage and a reason code."""

    type: Literal["lot.failed"] = "lot.failed"
    stage: Literal["ingest", "vision", "translate", "notifier"]
    reason: str = Field(max_length=100, description="e.g. image_unreachable, cancelled")
    message: str = Field(default="", max_length=2000)
    missing_images: list[str] = Field(default_factory=list)


class JobCancelRequested(Event):
    """Cancel every stage's pending work of a job (OpenAI batches included)."""

    type: Literal["job.cancel_requested"] = "job.cancel_requested"
    job_id: uuid.UUID


EVENT_TYPES: dict[str, type[Event]] = {
    "lot.submitted": LotSubmitted,
    "lot.assessed": LotAssessed,
    "lot.translated": LotTranslated,
    "lot.failed": LotFailed,
    "job.cancel_requested": JobCancelRequested,
}
TOPIC_OF: dict[str, str] = {
    "lot.submitted": LOTS_SUBMITTED,
    "lot.assessed": LOTS_ASSESSED,
    "lot.translated": LOTS_TRANSLATED,
    "lot.failed": LOTS_FAILED,
    "job.cancel_requested": JOBS_CONTROL,
}


def lot_key(job_id: uuid.UUID, lot_seq: int) -> str:
    return f"{job_id}:{lot_seq}"


def key_of(event: Event) -> str:
    """The Kafka key of an event: the lot key, or the job id for job-level events."""
    if isinstance(event, LotEvent):
        return event.lot_key
    if isinstance(event, JobCancelRequested):
        return str(event.job_id)
    return str(event.event_id)
