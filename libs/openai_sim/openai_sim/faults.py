"""Fault injection: latency distributions, 5xx ratios, timeouts, hangs, bad bodies, storms."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

from openai_sim.errors import ApiError
from openai_sim.ratelimit import QUOTA_MESSAGE

SERVER_ERROR = "The server had an error while processing your request. Sorry about that!"
OVERLOADED = "The engine is currently overloaded, please try again later."


@dataclass(frozen=True, slots=True)
class Fault:
    """One injected behaviour: ``kind`` is error, timeout, hang, malformed or drop."""

    kind: str
    error: ApiError | None = None
    sleep_s: float = 0.0


class Faults:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg["seed"])
        self.storm_until = 0.0

    def arm_storm(self) -> None:
        storm = self.cfg.get("storm")
        self.storm_until = time.monotonic() + float(storm["duration_s"]) if storm else 0.0

    def latency(self, endpoint: str, kind: str | None) -> float:
        lat = self.cfg["latency"]
        spec = (lat["kinds"].get(kind) if kind else None) or lat["endpoints"].get(endpoint)
        spec = spec or lat.get("default")
        if not spec:
            return 0.0
        dist = spec.get("dist", "fixed")
        if dist == "uniform":
            ms = self.rng.uniform(spec["min_ms"], spec["max_ms"])
        elif dist == "normal":
            ms = self.rng.gauss(spec["mean_ms"], spec.get("stddev_ms", 0.0))
        else:
            ms = spec.get("ms", 0.0)
        return max(0.0, ms) / 1000.0

    def pick(self, endpoint: str) -> Fault | None:
        storm = self.cfg.get("storm")
        if storm and time.monotonic() < self.storm_until and _applies(storm, endpoint):
            return Fault("error", error=_storm_error(storm))
        faults = self.cfg["faults"]
        if not _applies(faults, endpoint):
            return None
        roll = self.rng.random()
        for name in ("error_500", "error_503", "timeout", "hang", "malformed", "drop"):
            ratio = faults.get(name) or 0.0
            if roll < ratio:
                return _make(name, faults)
            roll -= ratio
        return None


def _applies(section: dict[str, Any], endpoint: str) -> bool:
    endpoints = section.get("endpoints")
    return endpoints is None or endpoint in endpoints


def _retry_headers(section: dict[str, Any]) -> dict[str, str]:
    headers: dict[str, str] = {}
    if section.get("should_retry") is not None:
        headers["x-should-retry"] = str(section["should_retry"]).lower()
    if section.get("retry_after_ms") is not None:
        ms = int(section["retry_after_ms"])
        headers["retry-after-ms"] = str(ms)
        headers["retry-after"] = str(max(1, -(-ms // 1000)))
    return headers


def _make(name: str, faults: dict[str, Any]) -> Fault:
    if name == "error_500":
        return Fault(
            "error",
            error=ApiError(500, SERVER_ERROR, type_="server_error", headers=_retry_headers(faults)),
        )
    if name == "error_503":
        return Fault(
            "error",
            error=ApiError(503, OVERLOADED, type_="server_error", headers=_retry_headers(faults)),
        )
    return Fault(name, sleep_s=float(faults.get("timeout_s", 5.0)))


def _storm_error(storm: dict[str, Any]) -> ApiError:
    headers = _retry_headers(storm)
    kind = str(storm.get("kind", "429"))
    if kind == "insufficient_quota":
        return ApiError(
            429,
            QUOTA_MESSAGE,
            type_="insufficient_quota",
            code="insufficient_quota",
            headers=headers,
        )
    if kind == "429":
        ms = int(storm.get("retry_after_ms") or 1000)
        message = (
            f"Rate limit reached in organization org-sim on requests per min (RPM): "
            f"Limit 1, Used 1, Requested 1. Please try again in {ms}ms. Visit "
            "https://platform.openai.com/account/rate-limits to learn more."
        )
        return ApiError(429, message, type_="requests", code="rate_limit_exceeded", headers=headers)
    if kind == "500":
        return ApiError(500, SERVER_ERROR, type_="server_error", headers=headers)
    return ApiError(503, OVERLOADED, type_="server_error", headers=headers)
