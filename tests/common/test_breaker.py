"""The OpenAI circuit breaker: resilience4j semantics on an injected clock."""

from __future__ import annotations

from typing import Any

import pytest
from gen_common.breaker import Breaker, BreakerSettings, Outcome, State, outcome_of
from gen_common.errors import (
    BreakerOpen,
    PermanentError,
    RateLimited,
    UpstreamUnavailable,
)
from gen_common.llm import QuotaExhausted


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make(clock: FakeClock, **kw: Any) -> Breaker:
    return Breaker(BreakerSettings(**kw), clock=clock)


def state(b: Breaker) -> State:
    return b.state


def fail_n(b: Breaker, n: int) -> None:
    for _ in range(n):
        assert b.allow()
        b.record_failure()


def test_defaults_follow_the_design() -> None:
    s = BreakerSettings()
    assert (s.window, s.minimum_calls, s.failure_rate) == (50, 20, 0.5)
    assert (s.slow_call_s, s.slow_rate, s.open_s, s.max_open_s) == (90.0, 0.8, 30.0, 300.0)
    assert s.half_open_calls == 3


def test_stays_closed_below_minimum_calls(clock: FakeClock) -> None:
    b = make(clock)
    fail_n(b, 19)
    assert state(b) is State.CLOSED
    b.record_failure()
    assert state(b) is State.OPEN


def test_opens_at_the_failure_rate_threshold_not_below(clock: FakeClock) -> None:
    b = make(clock)
    for _ in range(20):
        b.record_success()
    for _ in range(9):  # window 29: 9/29 < 50 %
        b.record_failure()
    assert state(b) is State.CLOSED
    for _ in range(11):  # 20/40 = 50 %
        b.record_failure()
    assert state(b) is State.OPEN
    assert b.trips == 1


def test_window_slides_old_outcomes_out(clock: FakeClock) -> None:
    b = make(clock, window=10, minimum_calls=10)
    for _ in range(4):
        b.record_failure()
    for _ in range(10):
        b.record_success()  # pushes the four failures out of the 10-call window
    for _ in range(4):
        b.record_failure()
    assert state(b) is State.CLOSED  # 4/10 < 50 %
    b.record_failure()
    assert state(b) is State.OPEN


def test_slow_successes_trip_on_slow_rate(clock: FakeClock) -> None:
    b = make(clock, minimum_calls=10, window=10)
    for _ in range(7):
        b.record_success(duration_s=91)
    for _ in range(2):
        b.record_success(duration_s=1)
    assert state(b) is State.CLOSED
    b.record_success(duration_s=120)  # 8/10 slow = 80 %
    assert state(b) is State.OPEN


def test_open_refuses_then_half_open_allows_three_probes(clock: FakeClock) -> None:
    b = make(clock)
    fail_n(b, 20)
    assert not b.allow()
    assert b.rejected == 1
    clock.now += 29.9
    assert not b.allow()
    clock.now += 0.2
    assert state(b) is State.HALF_OPEN
    assert [b.allow() for _ in range(4)] == [True, True, True, False]


def test_half_open_success_closes_and_resets_the_backoff(clock: FakeClock) -> None:
    b = make(clock)
    fail_n(b, 20)
    clock.now += 30
    for _ in range(3):
        assert b.allow()
        b.record_success()
    assert state(b) is State.CLOSED
    fail_n(b, 20)
    assert b.open_for() == pytest.approx(30)  # not doubled: the previous trip healed


def test_repeated_trips_double_the_open_time_up_to_five_minutes(clock: FakeClock) -> None:
    b = make(clock)
    fail_n(b, 20)
    seen = [b.open_for()]
    for _ in range(6):
        clock.now += seen[-1]
        for _ in range(3):
            assert b.allow()
            b.record_failure()
        assert state(b) is State.OPEN
        seen.append(b.open_for())
    assert seen == [30, 60, 120, 240, 300, 300, 300]


def test_half_open_decides_on_the_rate_of_all_probes(clock: FakeClock) -> None:
    b = make(clock)
    fail_n(b, 20)
    clock.now += 30
    for failed in (True, False, False):  # 1/3 failed < 50 % -> close
        assert b.allow()
        b.record_failure() if failed else b.record_success()
    assert state(b) is State.CLOSED


def test_ignored_outcomes_do_not_count_and_free_probe_permits(clock: FakeClock) -> None:
    b = make(clock)
    for _ in range(100):
        b.record_ignored()
    assert b.snapshot()["calls"] == 0
    fail_n(b, 20)
    clock.now += 30
    assert b.allow()
    b.record_ignored()  # a 429 during half-open
    assert [b.allow() for _ in range(4)] == [True, True, True, False]


def test_classifier_429_and_4xx_are_not_failures() -> None:
    assert outcome_of(RateLimited("429")) is Outcome.IGNORED
    assert outcome_of(PermanentError("400")) is Outcome.IGNORED
    assert outcome_of(BreakerOpen()) is Outcome.IGNORED
    assert outcome_of(UpstreamUnavailable("503")) is Outcome.FAILURE
    assert outcome_of(QuotaExhausted("quota")) is Outcome.FAILURE
    assert outcome_of(None) is Outcome.SUCCESS


async def test_guard_records_outcomes_and_refuses_when_open(clock: FakeClock) -> None:
    b = make(clock, minimum_calls=2, window=2)
    for _ in range(50):
        with pytest.raises(RateLimited):
            async with b.guard():
                raise RateLimited("storm")
    assert state(b) is State.CLOSED

    async def outage() -> None:
        async with b.guard():
            clock.now += 1
            raise UpstreamUnavailable("503")

    for _ in range(2):
        with pytest.raises(UpstreamUnavailable):
            await outage()
    assert state(b) is State.OPEN
    ran = False
    with pytest.raises(BreakerOpen):
        async with b.guard():
            ran = True
    assert not ran
    snap = b.snapshot()
    assert snap["state"] == "open"
    assert snap["trips"] == 1
