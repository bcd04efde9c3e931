"""Rate limits toward OpenAI: reading the ``x-ratelimit-*`` headers, and pacing calls from them.

- :func:`parse_duration` / :func:`parse_ratelimit` / :func:`retry_after` read the headers (Go
  durations such as ``6m0s``, ``1h2m3.5s``, ``12ms``; ``retry-after-ms``, ``retry-after`` in
  seconds or as an HTTP date); junk yields ``None``, nothing ever raises, every sleep is clamped
  to [0, 120 s].
- :class:`Throttle` paces calls from those values: an AIMD concurrency window (+1 after every
  ``increase_every`` successes, halved on a 429 or timeout), a pause for ``retry-after`` after a
  429, and a minimum spacing of ``60 s / limit`` between call starts once the remaining requests
  (or tokens) run low, so the sustained rate converges to the limit instead of bursting into 429s.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import random
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

MAX_SLEEP_S = 120.0
_GO_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}
_GO_UNITS["h"] = 3600.0


# -- header parsing (never raises) ---------------------------------------------------------------
def parse_duration(value: str | None) -> float | None:
    """A Go duration (``6m0s``, ``1h2m3.5s``, ``12ms``, ``0s``) or plain seconds, else None."""
    if value is None:
        return None
    text = value.strip()
    if not text or len(text) > 64:
        return None
    try:
        plain = float(text)
    except ValueError:
        plain = None
    if plain is not None:
        return plain if math.isfinite(plain) and plain >= 0 else None
    pos, total = 0, 0.0
    for match in _GO_PART.finditer(text):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _GO_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or pos == 0 or not math.isfinite(total):
        return None
    return total


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        number = int(value.strip())
    except ValueError:
        return None
    return number if 0 <= number < 10**15 else None


def clamp_sleep(seconds: float | None) -> float:
    if seconds is None or not math.isfinite(seconds):
        return 0.0
    return min(max(seconds, 0.0), MAX_SLEEP_S)


def retry_after(headers: Mapping[str, str]) -> float | None:
    """``retry-after-ms``, else ``retry-after`` (seconds or an HTTP date); clamped, or None."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            value = float(ms) / 1000.0
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value >= 0:
            return clamp_sleep(value)
    raw = headers.get("retry-after")
    if raw is None:
        return None
    seconds = parse_duration(raw)
    if seconds is None:
        try:
            date = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if date is None or date.tzinfo is None:
            return None
        seconds = date.timestamp() - time.time()
    return clamp_sleep(seconds)


@dataclass(frozen=True, slots=True)
class RateLimitInfo:
    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests_s: float | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens_s: float | None = None


def parse_ratelimit(headers: Mapping[str, str]) -> RateLimitInfo:
    def dur(name: str) -> float | None:
        value = parse_duration(headers.get(name))
        return None if value is None else clamp_sleep(value)

    return RateLimitInfo(
        limit_requests=_int(headers.get("x-ratelimit-limit-requests")),
        remaining_requests=_int(headers.get("x-ratelimit-remaining-requests")),
        reset_requests_s=dur("x-ratelimit-reset-requests"),
        limit_tokens=_int(headers.get("x-ratelimit-limit-tokens")),
        remaining_tokens=_int(headers.get("x-ratelimit-remaining-tokens")),
        reset_tokens_s=dur("x-ratelimit-reset-tokens"),
    )


# -- client-side throttle ------------------------------------------------------------------------
class ThrottleSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    start: int = Field(default=8, ge=1, description="initial concurrency window")
    floor: int = Field(default=1, ge=1)
    ceiling: int = Field(default=64, ge=1)
    increase_every: int = Field(default=20, ge=1, description="successes per +1 of the window")
    low_water: float = Field(
        default=0.05, ge=0, le=1, description="start pacing below this share of the limit"
    )


class Throttle:
    """Paces model calls of one process from the rate-limit headers and 429s (see module doc)."""

    def __init__(
        self,
        settings: ThrottleSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.window = float(min(settings.start, settings.ceiling))
        self.in_flight = 0
        self.spacing = 0.0
        self.not_before = 0.0
        self._next_start = 0.0
        self._successes = 0
        self._clock = clock
        self._rng = rng or random.Random()
        self._cond = asyncio.Condition()
        self.rate_limited = 0

    def delay(self) -> float:
        """Seconds until a call may start if a slot is free (0 = now)."""
        now = self._clock()
        return max(0.0, self.not_before - now, self._next_start - now)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[bool]:
        """Wait for a free slot in the window and for the pacing delay, then hold the slot.

        Yields whether the caller had to wait (a check made before the wait may be stale)."""
        waited = False
        async with self._cond:
            while True:
                wait = self.delay()
                if wait <= 0 and self.in_flight < max(1, int(self.window)):
                    break
                waited = True
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._cond.wait(), wait if wait > 0 else None)
            self.in_flight += 1
            # GCRA-like: a start that came late (scheduling, DB latency) may be caught up by
            # up to two intervals, so the sustained rate stays at the limit, not below it.
            floor = self._clock() - 2 * self.spacing
            self._next_start = max(floor, self._next_start) + self.spacing
        try:
            yield waited
        finally:
            async with self._cond:
                self.in_flight -= 1
                self._cond.notify_all()

    def on_response(self, info: RateLimitInfo, *, tokens: int = 0) -> None:
        """A successful call: grow the window additively, pace if the limits run low."""
        s = self.settings
        self._successes += 1
        if self._successes % s.increase_every == 0:
            self.window = min(float(s.ceiling), self.window + 1)
        spacing = 0.0
        lim, left = info.limit_requests, info.remaining_requests
        if lim and left is not None and left <= max(lim * s.low_water, 2 * self.window):
            spacing = 60.0 / lim
        tlim, tleft = info.limit_tokens, info.remaining_tokens
        low_tokens = tleft is not None and tleft <= max(tlim or 0, 0) * s.low_water
        if (
            tlim
            and tleft is not None
            and tokens > 0
            and (low_tokens or tleft <= 2 * self.window * tokens)
        ):
            spacing = max(spacing, tokens * 60.0 / tlim)
        self.spacing = clamp_sleep(spacing)

    def on_rate_limited(self, retry_after_s: float | None) -> None:
        """A 429: halve the window and pause every caller for the (jittered) retry-after."""
        self.rate_limited += 1
        self.window = max(float(self.settings.floor), self.window / 2)
        wait = clamp_sleep(retry_after_s if retry_after_s is not None else 1.0)
        wait = clamp_sleep(wait * (1 + 0.2 * self._rng.random()))
        self.not_before = max(self.not_before, self._clock() + wait)

    def on_timeout(self) -> None:
        self.window = max(float(self.settings.floor), self.window / 2)
