"""Settings of the notifier: one frozen class, built once in ``main()``."""

from __future__ import annotations

from gen_common.settings import ServiceSettings
from gen_common.ssrf import SsrfSettings
from pydantic import BaseModel, ConfigDict, Field, SecretStr

# Svix's default schedule: seconds between attempts (8 attempts over about 27.6 h).
DEFAULT_SCHEDULE = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)


class NotifierOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    shared_key: SecretStr = Field(
        default=SecretStr("dev-secret-key-for-testing-2024"),
        description="signs deliveries to endpoints without their own secret (the v1 client key)",
    )
    chunk_size: int = Field(default=50, ge=1, le=1000, description="lots per W2 payload")
    public_base_url: str = Field(default="", description="prefix of result_url; '' = relative")
    # Sending
    workers: int = Field(default=64, ge=1, le=1024, description="concurrent sends per process")
    claim_batch: int = Field(default=100, ge=1, le=1000)
    timeout_s: float = Field(default=15.0, gt=0, description="whole attempt, connect included")
    connect_timeout_s: float = Field(default=5.0, gt=0)
    response_max_bytes: int = Field(default=20_000, ge=0)
    schedule_s: tuple[float, ...] = Field(default=DEFAULT_SCHEDULE, min_length=0)
    jitter: float = Field(default=0.2, ge=0, lt=1)
    overload_min_s: float = Field(default=60.0, ge=0, description="after a timeout or 429")
    lease_s: float = Field(default=45.0, gt=0, description="above timeout_s")
    reap_interval_s: float = Field(default=5.0, gt=0)
    idle_poll_s: float = Field(default=1.0, gt=0)
    per_endpoint_in_flight: int = Field(default=16, ge=1)
    # Circuit breaker per endpoint, computed from webhook_attempts.
    breaker_window_s: float = Field(default=300.0, gt=0)
    breaker_min_attempts: int = Field(default=10, ge=1)
    breaker_failure_rate: float = Field(default=0.7, gt=0, le=1)
    breaker_open_s: float = Field(default=30.0, gt=0)
    breaker_max_open_s: float = Field(default=600.0, gt=0)
    breaker_interval_s: float = Field(default=5.0, gt=0)
    disable_after_s: float = Field(
        default=5 * 86_400.0, gt=0, description="every attempt failed this long -> disabled"
    )
    # Secret rotation
    rotation_grace_s: float = Field(default=86_400.0, ge=0, le=604_800.0)
    max_old_secrets: int = Field(default=10, ge=0)
    # SSRF policy (gen_common.ssrf): allow_cidrs admits self-hosted receivers on private nets.
    ssrf: SsrfSettings = SsrfSettings()
    register_resolve_timeout_s: float = Field(
        default=1.0, gt=0, description="DNS budget of the registration-time check"
    )
    # HTTP
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8004, ge=0, le=65535)


class NotifierSettings(ServiceSettings):
    notifier: NotifierOptions = NotifierOptions()

    def _secrets(self) -> list[tuple[str, SecretStr]]:
        return [("notifier.shared_key", self.notifier.shared_key)]
