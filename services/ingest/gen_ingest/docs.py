"""The wire models of the OpenAPI document (v1 request and answers, v2 job resource).

v1 requests are parsed and checked by validate.py in the contract's order; these models only
describe them. v2 requests are validated with :class:`JobCreate` itself.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

LotId = (
    Annotated[str, Field(min_length=1, max_length=255)]
    | Annotated[int, Field(strict=True, ge=-(2**63), le=2**63 - 1)]
)
Code = Annotated[str, Field(min_length=1, max_length=35, pattern=r"^[^\x00-\x1f\x7f]+$")]
Url = Annotated[str, Field(min_length=1, max_length=4096, pattern=r"^[^\x00]+$")]
Text = Annotated[str, Field(max_length=100_000, pattern=r"^[^\x00]*$")]
Hook = Annotated[str, Field(max_length=2048, pattern=r"^[^\x00]*$")]


class Image(BaseModel):
    url: Url


class LotV1(BaseModel):
    lot_id: LotId
    images: list[Image] = Field(min_length=1, max_length=100)
    additional_info: Text | None = None
    webhook: Hook | None = None


class GenerateRequest(BaseModel):
    """One lot is answered inline (200); two or more become a job (201)."""

    signature: str = Field(description="hex HMAC-SHA256 of the lots (contract §2.1)")
    version: Literal["1.0.0"]
    languages: list[Code] = Field(min_length=1, max_length=50)
    lots: list[LotV1] = Field(min_length=1, max_length=50_000)
    webhook_url: Hook | None = None


class Description(BaseModel):
    damages: str
    language: str


class SyncLot(BaseModel):
    descriptions: list[Description]
    lot_id: str | int
    missing_images: list[str] = Field(default_factory=list, description="only when non-empty")


class SyncResult(BaseModel):
    lots: list[SyncLot]
    version: str
    warnings: list[str] = Field(default_factory=list, description="only when non-empty")
    pending_languages: list[str] = Field(default_factory=list, description="only when non-empty")


class Accepted(BaseModel):
    creation_time: str = Field(examples=["1.57s"])
    job_id: str
    lots_count: int
    status: Literal["accepted"]


class Error(BaseModel):
    error: str
    message: str | None = None
    missing_images: list[str] | None = None


class Health(BaseModel):
    service: str
    status: str


class JobLot(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    lot_id: LotId
    images: list[Url] = Field(max_length=100)
    additional_info: Text = ""
    webhook: Hook | None = None


class JobCreate(BaseModel):
    """A v2 job: any number of lots, always answered 201 with the job resource."""

    model_config = ConfigDict(extra="forbid", strict=True)

    lots: list[JobLot] = Field(min_length=1, max_length=50_000)
    languages: list[Code] = Field(min_length=1, max_length=50)
    webhook_url: Hook | None = None


class JobLinks(BaseModel):
    self: str
    lots: str


class Job(BaseModel):
    job_id: str
    status: Literal["pending"]
    mode: Literal["realtime", "batch"]
    total_lots: int
    languages: list[str]
    webhook_url: str | None
    created_at: datetime = Field(description="RFC 3339, UTC, with Z")
    links: JobLinks


class ProbeRequest(BaseModel):
    """URLs to check as the pipeline would (SSRF guard, HEAD then ranged GET, threshold)."""

    urls: list[Url] = Field(max_length=100)


class ProbeResult(BaseModel):
    threshold_met: bool = Field(description="some valid and at most 30 % unreachable")
    unreachable_urls: list[str]
    valid_urls: list[str]


REQUEST_MODELS: dict[str, type[BaseModel]] = {
    "GenerateRequest": GenerateRequest,
    "JobCreate": JobCreate,
    "ProbeRequest": ProbeRequest,
}


def body(name: str) -> dict[str, Any]:
    """``openapi_extra`` declaring a JSON request body of the named model."""
    ref = {"$ref": f"#/components/schemas/{name}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


def _err(description: str) -> dict[str, Any]:
    return {"model": Error, "description": description}


HEALTH: dict[int | str, dict[str, Any]] = {200: {"model": Health, "description": "Healthy"}}
COMMON: dict[int | str, dict[str, Any]] = {
    400: _err("Invalid request (contract messages)"),
    413: _err("Body larger than the limit"),
    422: _err("Idempotency-Key reused with another body, or invalid fields"),
    409: _err("An identical request is still running"),
    429: _err("Rate limit exceeded (Retry-After)"),
    503: _err("Kafka or PostgreSQL unavailable; no job was created"),
}
GENERATE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": SyncResult, "description": "Sync result (one lot)"},
    201: {"model": Accepted, "description": "Job accepted (2+ lots)"},
    403: _err("Invalid signature"),
    500: _err("Processing failed"),
    504: _err("The sync budget ran out"),
    **COMMON,
}
JOB_RESPONSES: dict[int | str, dict[str, Any]] = {
    201: {"model": Job, "description": "Job created; every lot is durably in Kafka"},
    401: _err("Authentication failed"),
    415: _err("Content-Type must be application/json"),
    **COMMON,
}
PROBE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": ProbeResult, "description": "Each URL checked"},
    400: _err("Invalid JSON, or urls missing / not an array of strings / too many"),
    413: _err("Body larger than the limit"),
    429: _err("Rate limit per client address exceeded (Retry-After)"),
}
