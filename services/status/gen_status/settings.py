"""StatusSettings: the one settings class of the status service (env ``STATUS__*``)."""

from __future__ import annotations

from gen_common.settings import DbSettings, ServiceSettings
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import SettingsConfigDict


class StatusOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8002, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=32, description="uvicorn worker processes")
    shared_key: SecretStr = Field(
        default=SecretStr(""),
        description="HMAC key of the v1 X-Signature header (the original's SHARED_KEY)",
    )
    legacy_header_signatures: bool = Field(
        default=True,
        description="also accept HMAC(job_id) and HMAC('') in X-Signature (contract Decision 2)",
    )
    sign_open_routes: bool = Field(
        default=False,
        description="require X-Signature on batch-status, jobs/{id}, jobs/{id}/status (Decision 3)",
    )
    public_base: str = Field(default="", description="prefix of links in v2 answers")
    max_page: int = Field(default=100, ge=1, le=1000, description="cap of limit on list routes")
    cancel_publish_timeout_s: float = Field(
        default=10.0, gt=0, description="budget for Kafka to acknowledge the cancel event"
    )
    download_chunk: int = Field(default=1000, ge=1, description="lots read per query on download")


class StatusSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_nested_delimiter="__", frozen=True, extra="ignore", env_file=None
    )

    # One indexed query per poll: a few connections per worker process are plenty.
    db: DbSettings = DbSettings(pool_min=4, pool_max=8)
    status: StatusOptions = StatusOptions()

    def _secrets(self) -> list[tuple[str, SecretStr]]:
        return [("status.shared_key", self.status.shared_key)]
