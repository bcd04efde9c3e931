"""Settings of the vision stage: one frozen class, built once in ``main()``.

Environment names read as paths: ``VISION__WORKERS``, ``VISION__MODEL``,
``VISION__IMAGES__SSRF__ALLOW_CIDRS='["127.0.0.0/8"]'``, ``VISION__BREAKER__OPEN_S``.
"""

from __future__ import annotations

from typing import Literal

from gen_common.breaker import BreakerSettings
from gen_common.image_check import ImageCheckOptions
from gen_common.openai_batch import BatchOptions
from gen_common.ratelimits import ThrottleSettings
from gen_common.settings import OpenAISettings, ServiceSettings
from pydantic import BaseModel, ConfigDict, Field, SecretStr


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelPrice(_Frozen):
    """USD per one million tokens (realtime); the Batch API pays ``batch_discount`` of it."""

    input: float = Field(ge=0)
    cached_input: float = Field(ge=0)
    output: float = Field(ge=0)


DEFAULT_PRICES = {
    "gpt-6-luna": ModelPrice(input=0.10, cached_input=0.01, output=0.50),
    "gpt-5.6-luna": ModelPrice(input=0.20, cached_input=0.02, output=1.20),
    "gpt-5.4-mini": ModelPrice(input=0.75, cached_input=0.075, output=4.50),
    "gpt-4.1-mini": ModelPrice(input=0.40, cached_input=0.10, output=1.60),
}


class VisionOptions(_Frozen):
    workers: int = Field(default=16, ge=1, le=1024)
    model: str = "gpt-6-luna"
    detail: Literal["low", "high", "auto", "original"] = "low"
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = (
        Field(default="low", description="None sends no reasoning parameter")
    )
    max_output_tokens: int = Field(default=16_000, ge=16)
    prompt: str = Field(default="", description="system prompt; empty: the packaged prompt.md")
    prompt_cache_key: str = "vision-v1"
    prices: dict[str, ModelPrice] = Field(default_factory=lambda: dict(DEFAULT_PRICES))
    batch_discount: float = Field(default=0.5, gt=0, le=1)
    batch_min_lots: int | None = Field(
        default=None,
        description="batch-mode jobs with more lots go to the Batch API path; None: all realtime",
    )
    lease_s: float = Field(default=30.0, gt=0, description="renewed while a lot is worked on")
    max_attempts: int = Field(default=6, ge=1, description="429s and breaker refusals not counted")
    invalid_output_attempts: int = Field(default=3, ge=1)
    image_retries: int = Field(default=3, ge=0, description="resends without a refused image")
    rate_limit_retries: int = Field(default=2, ge=0, description="in-process 429 retries")
    retry_base_s: float = Field(default=2.0, gt=0)
    retry_max_s: float = Field(default=300.0, gt=0)
    quota_retry_s: float = Field(default=300.0, gt=0)
    idle_poll_s: float = Field(default=1.0, gt=0)
    reap_interval_s: float = Field(default=5.0, gt=0)
    refuse_retired_models: bool = Field(
        default=True, description="refuse to start when a configured model is shut down"
    )
    metrics_port: int | None = Field(default=None, description="prometheus /metrics; None: off")
    metrics_host: str = "127.0.0.1"
    images: ImageCheckOptions = ImageCheckOptions()
    breaker: BreakerSettings = BreakerSettings()
    throttle: ThrottleSettings = ThrottleSettings()
    batch: BatchOptions = BatchOptions()


class VisionSettings(ServiceSettings):
    openai: OpenAISettings = OpenAISettings()
    vision: VisionOptions = VisionOptions()

    def _secrets(self) -> list[tuple[str, SecretStr]]:
        return [("openai.api_key", self.openai.api_key)]
