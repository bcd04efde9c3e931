"""An in-process circuit breaker around OpenAI with resilience4j semantics (reliability.md §4).

- CLOSED: calls pass; outcomes go into a count-based sliding window (``window`` calls). Once
  ``minimum_calls`` are recorded, the breaker opens when the failure rate reaches
  ``failure_rate`` or the slow-call rate (calls longer than ``slow_call_s``) reaches ``slow_rate``.
- OPEN: :meth:`Breaker.allow` refuses every call for the open duration: ``open_s``, doubled on
  every trip that follows a failed half-open test, capped at ``max_open_s``.
- HALF_OPEN: ``half_open_calls`` probes are let through; once all of them are recorded, the same
  thresholds decide between CLOSED (window and trip count reset) and OPEN again.

Only upstream trouble counts as a failure (timeouts, connection errors, 5xx, exhausted quota):
a 429 is a rate signal for the throttle, and 400/401/404 are our bugs, so both are *ignored* —
neither success nor failure; an ignored half-open probe gives its permit back.

Usage: ``if breaker.allow(): ... breaker.record_success(duration)`` or
``async with breaker.guard(): await call()`` (raises :class:`BreakerOpen` when refused). The clock
is injected so tests run on a fake one; :meth:`Breaker.snapshot` feeds metrics.
"""

from __future__ import annotations

import enum
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from pydantic import BaseModel, ConfigDict, Field

from gen_common.errors import BreakerOpen, RateLimited, RetryableError

log = logging.getLogger(__name__)
Clock = Callable[[], float]


class BreakerSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    window: int = Field(default=50, ge=1, description="count-based sliding window")
    minimum_calls: int = Field(default=20, ge=1)
    failure_rate: float = Field(default=0.5, gt=0, le=1)
    slow_call_s: float = Field(default=90.0, gt=0)
    slow_rate: float = Field(default=0.8, gt=0, le=1)
    open_s: float = Field(default=30.0, gt=0)
    max_open_s: float = Field(default=300.0, gt=0)
    half_open_calls: int = Field(default=3, ge=1)


class State(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Outcome(enum.Enum):
    SUCCESS = "success"
    FAILURE = "failure"
    IGNORED = "ignored"


def outcome_of(exc: BaseException | None) -> Outcome:
    """Default classifier: retryable upstream trouble fails; 429, 4xx and the rest are ignored."""
    if exc is None:
        return Outcome.SUCCESS
    if isinstance(exc, RateLimited | BreakerOpen):
        return Outcome.IGNORED
    if isinstance(exc, RetryableError) or getattr(exc, "breaker_failure", False):
        return Outcome.FAILURE
    return Outcome.IGNORED


class Breaker:
    def __init__(
        self, settings: BreakerSettings, *, clock: Clock = time.monotonic, name: str = "openai"
    ) -> None:
        self.settings = settings
        self.name = name
        self._clock = clock
        self._state = State.CLOSED
        self._window: deque[tuple[bool, bool]] = deque(maxlen=settings.window)
        self._probes: list[tuple[bool, bool]] = []
        self._permits = 0
        self._open_until = 0.0
        self._consecutive_trips = 0
        self.trips = 0
        self.rejected = 0

    # -- state ---------------------------------------------------------------------------------
    @property
    def state(self) -> State:
        if self._state is State.OPEN and self._clock() >= self._open_until:
            self._transition(State.HALF_OPEN)
            self._probes.clear()
            self._permits = 0
        return self._state

    def open_for(self) -> float:
        """Seconds until an open breaker lets probes through (0 when not open)."""
        if self.state is not State.OPEN:
            return 0.0
        return max(0.0, self._open_until - self._clock())

    def snapshot(self) -> dict[str, object]:
        failures = sum(f for f, _ in self._window)
        slow = sum(s for _, s in self._window)
        return {
            "name": self.name,
            "state": self.state.value,
            "calls": len(self._window),
            "failures": failures,
            "slow": slow,
            "trips": self.trips,
            "rejected": self.rejected,
            "open_for_s": self.open_for(),
        }

    # -- calls ---------------------------------------------------------------------------------
    def available(self) -> bool:
        """Whether :meth:`allow` would say yes now, without taking a permit (claim guard)."""
        state = self.state
        return state is State.CLOSED or (
            state is State.HALF_OPEN and self._permits < self.settings.half_open_calls
        )

    def allow(self) -> bool:
        """True if a call may start now (a half-open probe takes one permit)."""
        state = self.state
        if state is State.CLOSED:
            return True
        if state is State.HALF_OPEN and self._permits < self.settings.half_open_calls:
            self._permits += 1
            return True
        self.rejected += 1
        return False

    def record_success(self, duration_s: float = 0.0) -> None:
        self._record(failed=False, slow=duration_s > self.settings.slow_call_s)

    def record_failure(self, duration_s: float = 0.0) -> None:
        self._record(failed=True, slow=duration_s > self.settings.slow_call_s)

    def record_ignored(self) -> None:
        """Neither success nor failure; a half-open probe gives its permit back."""
        if self._state is State.HALF_OPEN and self._permits > 0:
            self._permits -= 1

    def record(self, outcome: Outcome, duration_s: float = 0.0) -> None:
        if outcome is Outcome.SUCCESS:
            self.record_success(duration_s)
        elif outcome is Outcome.FAILURE:
            self.record_failure(duration_s)
        else:
            self.record_ignored()

    @asynccontextmanager
    async def guard(
        self, classify: Callable[[BaseException | None], Outcome] = outcome_of
    ) -> AsyncIterator[None]:
        """Run the block as one call; raises BreakerOpen without running it when refused."""
        if not self.allow():
            raise BreakerOpen(f"circuit breaker {self.name} is open")
        started = self._clock()
        try:
            yield
        except BaseException as exc:
            self.record(classify(exc), self._clock() - started)
            raise
        self.record(Outcome.SUCCESS, self._clock() - started)

    # -- internals -----------------------------------------------------------------------------
    def _record(self, *, failed: bool, slow: bool) -> None:
        state = self.state
        if state is State.OPEN:
            return  # a call that started before the trip; the window restarts after
        if state is State.HALF_OPEN:
            self._probes.append((failed, slow))
            if len(self._probes) >= self.settings.half_open_calls:
                if self._exceeded(self._probes):
                    self._trip()
                else:
                    self._close()
            return
        self._window.append((failed, slow))
        if len(self._window) >= self.settings.minimum_calls and self._exceeded(self._window):
            self._trip()

    def _exceeded(self, calls: deque[tuple[bool, bool]] | list[tuple[bool, bool]]) -> bool:
        n = len(calls)
        failures = sum(f for f, _ in calls)
        slow = sum(s for _, s in calls)
        return failures / n >= self.settings.failure_rate or slow / n >= self.settings.slow_rate

    def _trip(self) -> None:
        s = self.settings
        duration = min(s.open_s * 2**self._consecutive_trips, s.max_open_s)
        self._consecutive_trips += 1
        self.trips += 1
        self._open_until = self._clock() + duration
        self._window.clear()
        self._probes.clear()
        self._permits = 0
        self._transition(State.OPEN, open_s=duration)

    def _close(self) -> None:
        self._consecutive_trips = 0
        self._window.clear()
        self._probes.clear()
        self._permits = 0
        self._transition(State.CLOSED)

    def _transition(self, new: State, **extra: object) -> None:
        log.warning(
            "circuit breaker state change",
            extra={"breaker": self.name, "from": self._state.value, "to": new.value, **extra},
        )
        self._state = new
