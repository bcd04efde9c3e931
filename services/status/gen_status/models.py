"""Response models: they document the wire (OpenAPI) — the routes render dicts with orjson."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(BaseModel):
    model_config = ConfigDict(extra="allow")
    error: str


class NotCompleted(_Doc):
    error: str = Field(examples=["Job not completed"])
    message: str | None = None
    status: str


class CancelRefused(_Doc):
    error: str
    message: str
    status: str


class Progress(_Doc):
    total_lots: int
    processed_lots: int
    failed_lots: int
    completion_percentage: float


class BatchStatus(_Doc):
    job_id: str
    status: str
    created_at: str
    updated_at: str
    error: str | None
    error_message: str | None
    progress: Progress
    languages: list[str]


class JobStatus(_Doc):
    job_id: str
    status: str
    created_at: str
    updated_at: str
    error: str | None = None


class Description(_Doc):
    language: str
    damages: str


class ResultLot(_Doc):
    lot_id: str | int
    status: str
    vision_result: str | None
    translations: dict[str, str]
    error_message: str | None
    missing_images: list[str]
    descriptions: list[Description]


class ResultData(_Doc):
    job_id: str
    status: str
    lots: list[ResultLot]


class BatchResults(_Doc):
    completed_at: str
    job_id: str
    status: str
    results: ResultData


class Download(_Doc):
    job_id: str
    status: str
    completed_at: str
    generated_at: str
    total_lots: int
    processed_lots: int
    failed_lots: int
    languages: list[str]
    results: ResultData


class JobDetail(_Doc):
    job_id: str
    status: str
    total_lots: int
    processed_lots: int
    failed_lots: int
    results: list[ResultLot]
    error: str | None = None
    message: str | None = None


class JobItem(_Doc):
    job_id: str
    status: str
    created_at: str
    updated_at: str
    languages: list[str]
    webhook_url: str | None
    total_lots: int
    processed_lots: int
    failed_lots: int
    error_message: str | None
    openai_batch_id: str | None
    progress: Progress


class Pagination(_Doc):
    limit: int
    offset: int
    total: int = Field(description="number of all jobs matching the filter")


class JobsPage(_Doc):
    jobs: list[JobItem]
    pagination: Pagination


class Cancelled(_Doc):
    job_id: str
    message: str
    status: str


class Health(_Doc):
    service: str
    status: str
    database: str


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for error statuses answering ``{"error": ...}``."""
    return {code: {"model": ErrorBody} for code in codes}


class Usage(_Doc):
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cost_usd: float


class V2Links(_Doc):
    self: str
    lots: str


class V2Job(_Doc):
    job_id: str
    status: str
    mode: str
    languages: list[str]
    total_lots: int
    completed_lots: int
    failed_lots: int
    pending_lots: int
    usage: Usage
    error_message: str | None
    webhook_url: str | None
    created_at: str = Field(description="RFC 3339, UTC, Z")
    updated_at: str
    completed_at: str | None
    cancelled_at: str | None
    links: V2Links


class V2Lot(_Doc):
    lot_seq: int
    lot_id: str | int
    status: str
    descriptions: list[Description]
    missing_images: list[str]
    pending_languages: list[str]
    warnings: list[str]
    error_code: str | None
    error_message: str | None
    usage: Usage
    created_at: str
    updated_at: str
    completed_at: str | None


class V2PageLinks(_Doc):
    job: str
    next: str | None


class V2LotsPage(_Doc):
    job_id: str
    lots: list[V2Lot]
    next_cursor: str | None = Field(description="opaque; absent (null) on the last page")
    links: V2PageLinks
