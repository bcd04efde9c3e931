"""The Batch API engine's settings (:class:`BatchOptions`), embedded by each stage's settings."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


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
