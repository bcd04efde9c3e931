"""Per-model RPM/TPM token buckets, the x-ratelimit-* headers and the real 429 bodies."""

from __future__ import annotations

import math
import time
from typing import Any

from openai_sim.errors import ApiError

DOCS = "Visit https://platform.openai.com/account/rate-limits to learn more."
QUOTA_MESSAGE = (
    "You exceeded your current quota, please check your plan and billing details. For more "
    "information on this error, read the docs: "
    "https://platform.openai.com/docs/guides/error-codes/api-errors."
)


def go_duration(seconds: float) -> str:
    """Go's time.Duration.String() for the reset headers: ``12ms``, ``1.5s``, ``6m0s``."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{max(1, round(seconds * 1000))}ms"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    sec_text = f"{secs:.3f}".rstrip("0").rstrip(".")
    if hours:
        return f"{int(hours)}h{int(minutes)}m{sec_text}s"
    if minutes:
        return f"{int(minutes)}m{sec_text}s"
    return f"{sec_text}s"


class Bucket:
    __slots__ = ("capacity", "level", "rate", "stamp")

    def __init__(self, per_minute: float) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.level = self.capacity
        self.stamp = time.monotonic()

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_for(self, amount: float) -> float:
        return max(0.0, (amount - self.level) / self.rate) if self.rate else math.inf

    def reset_in(self) -> float:
        return (self.capacity - self.level) / self.rate if self.rate else 0.0


class RateLimiter:
    def __init__(self, cfg: dict[str, Any], org: str) -> None:
        self.cfg = cfg
        self.org = org
        self._buckets: dict[str, tuple[Bucket, Bucket]] = {}

    def _limits(self, model: str) -> dict[str, Any]:
        limits: dict[str, Any] = self.cfg["models"].get(model) or self.cfg["default"]
        return limits

    def _pair(self, model: str) -> tuple[Bucket, Bucket]:
        pair = self._buckets.get(model)
        limits = self._limits(model)
        if pair is None or pair[0].capacity != limits["rpm"] or pair[1].capacity != limits["tpm"]:
            pair = (Bucket(limits["rpm"]), Bucket(limits["tpm"]))
            self._buckets[model] = pair
        return pair

    def take(self, model: str, tokens: int) -> dict[str, str]:
        """Consume one request and ``tokens``; return headers or raise the 429 ApiError."""
        if self.cfg.get("insufficient_quota"):
            raise ApiError(
                429, QUOTA_MESSAGE, type_="insufficient_quota", code="insufficient_quota"
            )
        req_b, tok_b = self._pair(model)
        now = time.monotonic()
        req_b.refill(now)
        tok_b.refill(now)
        if tokens > tok_b.capacity:
            raise ApiError(
                429,
                f"Request too large for {model} in organization {self.org} on "
                f"tokens per min (TPM): Limit {int(tok_b.capacity)}, Requested {tokens}. "
                f"The input or output tokens must be reduced in order to run "
                f"successfully. {DOCS}",
                type_="tokens",
                code="rate_limit_exceeded",
            )
        if req_b.level < 1:
            self._breach(model, "requests", "RPM", req_b, 1)
        if tok_b.level < tokens:
            self._breach(model, "tokens", "TPM", tok_b, tokens)
        req_b.level -= 1
        tok_b.level -= tokens
        return self.headers(req_b, tok_b)

    def _breach(self, model: str, kind: str, unit: str, bucket: Bucket, amount: int) -> None:
        wait = max(bucket.wait_for(amount), 0.001)
        used = int(bucket.capacity - bucket.level)
        message = (
            f"Rate limit reached for {model} in organization {self.org} on {kind} per min "
            f"({unit}): Limit {int(bucket.capacity)}, Used {used}, Requested {amount}. "
            f"Please try again in {go_duration(wait)}. {DOCS}"
        )
        req_b, tok_b = self._pair(model)
        headers = self.headers(req_b, tok_b)
        headers["retry-after"] = str(max(1, math.ceil(wait)))
        headers["retry-after-ms"] = str(max(1, math.ceil(wait * 1000)))
        raise ApiError(429, message, type_=kind, code="rate_limit_exceeded", headers=headers)

    def peek(self, model: str) -> dict[str, str]:
        req_b, tok_b = self._pair(model)
        return self.headers(req_b, tok_b)

    @staticmethod
    def headers(req_b: Bucket, tok_b: Bucket) -> dict[str, str]:
        return {
            "x-ratelimit-limit-requests": str(int(req_b.capacity)),
            "x-ratelimit-limit-tokens": str(int(tok_b.capacity)),
            "x-ratelimit-remaining-requests": str(max(0, int(req_b.level))),
            "x-ratelimit-remaining-tokens": str(max(0, int(tok_b.level))),
            "x-ratelimit-reset-requests": go_duration(req_b.reset_in()),
            "x-ratelimit-reset-tokens": go_duration(tok_b.reset_in()),
        }

    def reset(self) -> None:
        self._buckets.clear()
