"""The Batch object and its JSON form (openai-reference §4.5)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

TIMESTAMPS = (
    "in_progress_at",
    "finalizing_at",
    "completed_at",
    "failed_at",
    "expired_at",
    "cancelling_at",
    "cancelled_at",
)


def _usage() -> dict[str, Any]:
    return {
        "input_tokens": 0,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 0,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 0,
    }


@dataclass(slots=True, eq=False)
class Batch:
    id: str
    endpoint: str
    input_file_id: str
    completion_window: str
    metadata: dict[str, str] | None
    created_at: float
    expires_at: float
    status: str = "validating"
    model: str | None = None
    errors: dict[str, Any] | None = None
    in_progress_at: float = 0.0
    finalizing_at: float = 0.0
    completed_at: float = 0.0
    failed_at: float = 0.0
    expired_at: float = 0.0
    cancelling_at: float = 0.0
    cancelled_at: float = 0.0
    output_file_id: str | None = None
    error_file_id: str | None = None
    tasks: list[tuple[str, bytes]] = field(default_factory=list)
    total: int = 0
    done: int = 0
    completed: int = 0
    failed: int = 0
    enqueued_tokens: int = 0
    out: list[tuple[str, bytes]] = field(default_factory=list)
    err: list[tuple[str, bytes]] = field(default_factory=list)
    usage: dict[str, Any] = field(default_factory=_usage)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def record(self, custom_id: str, ok: bool, line: bytes, usage: dict[str, Any]) -> None:
        if ok:
            self.completed += 1
            self.out.append((custom_id, line))
        else:
            self.failed += 1
            self.err.append((custom_id, line))
        if usage:
            total = self.usage
            total["input_tokens"] += usage["input_tokens"]
            total["input_tokens_details"]["cached_tokens"] += usage["input_tokens_details"][
                "cached_tokens"
            ]
            total["output_tokens"] += usage["output_tokens"]
            total["output_tokens_details"]["reasoning_tokens"] += usage["output_tokens_details"][
                "reasoning_tokens"
            ]
            total["total_tokens"] += usage["total_tokens"]

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "model": self.model,
            "errors": self.errors,
            "input_file_id": self.input_file_id,
            "completion_window": self.completion_window,
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": int(self.created_at),
            "expires_at": int(self.expires_at),
            "request_counts": {
                "total": self.total,
                "completed": self.completed,
                "failed": self.failed,
            },
            "usage": self.usage,
            "metadata": self.metadata,
        }
        for name in TIMESTAMPS:
            value = getattr(self, name)
            body[name] = int(value) if value else None
        return body
