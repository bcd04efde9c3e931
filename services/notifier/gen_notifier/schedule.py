"""When to try again: the retry schedule, Retry-After, and the clock it is computed with.

``next_delay`` implements reliability.md P1: base = schedule[n] (at least ``overload_min_s``
after a timeout or 429); a Retry-After r gives clamp(r, base, 2·base); the result gets ±jitter.
``None`` means the schedule is exhausted.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Protocol


class Clock(Protocol):
    """The time attempts are stamped with and retries are computed from."""

    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass
class ManualClock:
    """A clock tests move by hand (it never moves by itself)."""

    current: datetime = field(default_factory=lambda: datetime.now(UTC))

    def now(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)

    def set(self, when: datetime) -> None:
        self.current = when


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds from a Retry-After header (delta-seconds, float, or HTTP date); None if unusable."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - now).total_seconds()
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        return None
    return max(0.0, seconds)


def next_delay(
    schedule: Sequence[float],
    attempt: int,
    *,
    overloaded: bool = False,
    retry_after: float | None = None,
    overload_min_s: float = 60.0,
    jitter: float = 0.2,
    rng: random.Random | None = None,
) -> float | None:
    """Seconds until the attempt after attempt number ``attempt`` (1-based); None: exhausted."""
    if attempt < 1 or attempt > len(schedule):
        return None
    base = schedule[attempt - 1]
    if overloaded:
        base = max(base, overload_min_s)
    scheduled = base if retry_after is None else min(max(retry_after, base), 2 * base)
    factor = (rng or random).uniform(1 - jitter, 1 + jitter)
    return scheduled * factor
