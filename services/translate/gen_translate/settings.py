"""Settings of the translate stage: one frozen class, built once in ``main()``."""

from __future__ import annotations

from typing import Literal

from gen_common.breaker import BreakerSettings
from gen_common.openai_batch import BatchOptions
from gen_common.ratelimits import ThrottleSettings
from gen_common.settings import OpenAISettings, ServiceSettings
from pydantic import BaseModel, ConfigDict, Field, SecretStr


class ModelPrice(BaseModel):
    """USD per one million tokens."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input: float = Field(ge=0)
    cached_input: float = Field(ge=0)
    output: float = Field(ge=0)


DEFAULT_PRICES = {
    "gpt-6-luna": ModelPrice(input=0.10, cached_input=0.01, output=0.50),
    "gpt-5.6-luna": ModelPrice(input=0.20, cached_input=0.02, output=1.20),
    "gpt-4.1-mini": ModelPrice(input=0.40, cached_input=0.10, output=1.60),
}


class TranslateOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    workers: int = Field(
        default=8,
        ge=1,
        le=256,
        description="realtime workers; a worker takes one row, or all languages of a lot at once",
    )
    model: str = "gpt-6-luna"
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = (
        Field(
            default="none", description="None sends no reasoning parameter (non-reasoning models)"
        )
    )
    max_output_tokens: int = Field(default=4096, ge=16)
    instructions: str = Field(default="", description="empty: the packaged prompt.md")
    prices: dict[str, ModelPrice] = Field(default_factory=lambda: dict(DEFAULT_PRICES))
    sync_budget_s: float = Field(
        default=45.0, gt=0, description="sync lots: translation budget from the assessed time"
    )
    lease_s: float = Field(default=180.0, gt=0, description="above the OpenAI call timeout")
    max_attempts: int = Field(
        default=6, ge=1, description="tries per (lot, language); 429s are not counted"
    )
    retry_base_s: float = Field(default=2.0, gt=0)
    retry_max_s: float = Field(default=300.0, gt=0)
    idle_poll_s: float = Field(default=1.0, gt=0, description="worker poll when not woken")
    reap_interval_s: float = Field(default=1.0, gt=0)
    batch_min_lots: int | None = Field(
        default=None,
        description="batch-mode jobs with more lots go to the Batch API path; None: all realtime",
    )
    batch: BatchOptions = BatchOptions()
    throttle: ThrottleSettings = ThrottleSettings()
    metrics_port: int | None = Field(default=None, description="prometheus /metrics; None: off")
    metrics_host: str = "127.0.0.1"


class TranslateSettings(ServiceSettings):
    openai: OpenAISettings = OpenAISettings()
    breaker: BreakerSettings = BreakerSettings()
    translate: TranslateOptions = TranslateOptions()

    def _secrets(self) -> list[tuple[str, SecretStr]]:
        return [("openai.api_key", self.openai.api_key)]
