"""Shared settings sub-models and the base every service's settings class builds on.

Each service defines one frozen class, e.g. ``VisionSettings(ServiceSettings)`` with a
``vision: VisionOptions`` field, and builds it once in ``main()``. Environment names read as
paths thanks to ``__`` nesting: ``KAFKA__BOOTSTRAP_SERVERS``, ``DB__URL``, ``OPENAI__API_KEY``.
Tests build settings with keyword arguments and never touch ``os.environ``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRETS = frozenset({"", "changethis", "change-me", "secret"})


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(_Frozen):
    bootstrap_servers: str = "127.0.0.1:19092"
    client_id: str = "generation-service"
    topic_prefix: str = Field(default="", description="prepended to every topic name (tests)")
    partitions: int = Field(default=6, ge=1)
    replication_factor: int = Field(default=1, ge=1)
    min_insync_replicas: int = Field(default=1, ge=1)
    linger_ms: int = Field(
        default=0,
        ge=0,
        description="0: every publish is one event awaited by a request or a relay pass, and "
        "records sent while a produce request is in flight batch anyway",
    )
    request_timeout_ms: int = Field(default=30_000, ge=1_000)
    session_timeout_ms: int = Field(default=10_000, ge=3_000)
    max_poll_records: int = Field(default=500, ge=1)
    commit_interval_s: float = Field(
        default=0.2,
        ge=0,
        description="consumed offsets are committed at most this often (0: after every batch); "
        "always after PostgreSQL, so a crash only redelivers records already applied",
    )

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"


class DbSettings(_Frozen):
    url: SecretStr = SecretStr("postgresql://gen@127.0.0.1:55432/gen")
    pool_min: int = Field(default=1, ge=0)
    pool_max: int = Field(default=10, ge=1)
    command_timeout_s: float = Field(default=30.0, gt=0)
    acquire_timeout_s: float = Field(default=60.0, gt=0, description="waiting for a pool slot")
    release_timeout_s: float | None = Field(
        default=None, gt=0, description="a connection's reset on release (default: command)"
    )


class OpenAISettings(_Frozen):
    api_key: SecretStr = SecretStr("")
    base_url: str | None = None
    timeout_s: float = Field(default=120.0, gt=0)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    max_retries: int = Field(default=1, ge=0)
    simulated: bool = Field(
        default=False, description="base_url is the local simulator: mark output simulated"
    )


class LogSettings(_Frozen):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    json_format: bool = True


class ServiceSettings(BaseSettings):
    """Base of every service's settings: frozen, ``__``-nested, secrets masked."""

    model_config = SettingsConfigDict(
        env_nested_delimiter="__", frozen=True, extra="ignore", env_file=None
    )

    env: Literal["dev", "test", "prod"] = "dev"
    kafka: KafkaSettings = KafkaSettings()
    db: DbSettings = DbSettings()
    log: LogSettings = LogSettings()

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> ServiceSettings:
        if self.env != "prod":
            return self
        for name, value in self._secrets():
            if value.get_secret_value().strip().lower() in PLACEHOLDER_SECRETS:
                raise ValueError(f"{name} holds a placeholder secret; set a real one for env=prod")
        return self

    def _secrets(self) -> list[tuple[str, SecretStr]]:
        """Secrets that must not be placeholders in production; services extend this."""
        return []
