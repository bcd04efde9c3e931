"""Settings of the ingest stage: one frozen class, built once in ``main()``."""

from __future__ import annotations

from gen_common.image_check import ImageCheckOptions
from gen_common.settings import ServiceSettings
from pydantic import BaseModel, ConfigDict, Field, SecretStr

MB = 1_000_000


class IngestOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8001, ge=0, le=65535)
    shared_key: SecretStr = Field(
        default=SecretStr("default-shared-key-change-in-production"),
        description="v1 HMAC key (the original's SHARED_KEY)",
    )
    public_base: str = Field(default="", description="prefix of links in v2 answers")
    max_body_bytes: int = Field(default=200 * MB, ge=1024, description="413 above this")
    max_lots: int = Field(default=50_000, ge=1)
    max_batch_file_bytes: int = Field(default=200 * MB, ge=1)
    max_line_bytes: int = Field(default=1_048_576, ge=1024, description="per estimated JSONL line")
    max_sync_images: int = Field(default=20, ge=1)
    max_lot_images: int = Field(default=100, ge=1, le=100, description="the event's limit")
    realtime_max_lots: int = Field(
        default=100, ge=1, description="jobs up to this size run realtime, larger ones batch"
    )
    sync_budget_s: float = Field(default=300.0, gt=0)
    publish_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="a submission's lots not all acknowledged by Kafka by then: 503, job aborted",
    )
    sync_language_warning: int = Field(default=5, ge=0, description="non-en languages to warn at")
    idempotency_ttl_s: float = Field(default=86_400.0, gt=0)
    duplicate_window_s: float = Field(
        default=600.0, ge=0, description="a byte-identical v1 re-post within it replays (0 = off)"
    )
    clock_skew_s: int = Field(default=300, ge=1)
    rate_per_s: float = Field(default=50.0, gt=0, description="v2 default per client (GCRA)")
    rate_burst: int = Field(default=100, ge=1)
    v1_rate_per_s: float = Field(default=200.0, gt=0, description="v1: one bucket, one shared key")
    v1_rate_burst: int = Field(default=400, ge=1)
    probe_rate_per_s: float = Field(default=2.0, gt=0, description="test-image-validation per IP")
    probe_rate_burst: int = Field(default=10, ge=1)
    images: ImageCheckOptions = Field(
        default_factory=ImageCheckOptions,
        description="test-image-validation: the pipeline's checker, SSRF guard included",
    )
    purge_interval_s: float = Field(default=60.0, gt=0)


class IngestSettings(ServiceSettings):
    ingest: IngestOptions = IngestOptions()

    def _secrets(self) -> list[tuple[str, SecretStr]]:
        return [("ingest.shared_key", self.ingest.shared_key)]
