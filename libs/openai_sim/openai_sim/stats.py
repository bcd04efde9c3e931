"""Call counters and the bounded call log read through /_sim/stats and /_sim/calls."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Call:
    """What one request did; handlers fill in the model and kind as they learn them."""

    endpoint: str
    retry_count: int
    request_id: str
    model: str | None = None
    kind: str | None = None  # "vision" (has input_image parts) or "text"
    metadata: dict[str, str] | None = None
    images: list[str] | None = None
    status: int = 200
    error_code: str | None = None
    fault: str | None = None


def _counter() -> dict[str, Any]:
    return {"calls": 0, "errors": 0, "retried_calls": 0, "status": {}}


@dataclass(slots=True)
class Stats:
    log_size: int
    endpoints: dict[str, dict[str, Any]] = field(default_factory=dict)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    totals: dict[str, Any] = field(default_factory=_counter)
    faults: dict[str, int] = field(default_factory=dict)
    log: deque[dict[str, Any]] = field(default_factory=deque)

    def record(self, call: Call, *, sim_time: float) -> None:
        targets = [self.totals, self.endpoints.setdefault(call.endpoint, _counter())]
        if call.model:
            targets.append(self.models.setdefault(call.model, _counter()))
        status_key = str(call.status)
        for counter in targets:
            counter["calls"] += 1
            counter["errors"] += call.status >= 400
            counter["retried_calls"] += call.retry_count > 0
            counter["status"][status_key] = counter["status"].get(status_key, 0) + 1
        if call.fault:
            self.faults[call.fault] = self.faults.get(call.fault, 0) + 1
        if call.endpoint == "responses" and self.log_size > 0:
            if len(self.log) >= self.log_size:
                self.log.popleft()
            self.log.append(
                {
                    "time": sim_time,
                    "request_id": call.request_id,
                    "model": call.model,
                    "kind": call.kind,
                    "metadata": call.metadata,
                    "image_urls": call.images or [],
                    "image_count": len(call.images or ()),
                    "status": call.status,
                    "errored": call.status >= 400,
                    "error_code": call.error_code,
                    "fault": call.fault,
                    "retry_count": call.retry_count,
                }
            )

    def snapshot(self) -> dict[str, Any]:
        return {
            "totals": self.totals,
            "endpoints": self.endpoints,
            "models": self.models,
            "faults": self.faults,
        }
