"""P1: the retry schedule as a property; Retry-After parsing."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from gen_notifier.schedule import next_delay, parse_retry_after
from gen_notifier.settings import DEFAULT_SCHEDULE
from hypothesis import given
from hypothesis import strategies as st

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@given(
    attempt=st.integers(min_value=1, max_value=len(DEFAULT_SCHEDULE)),
    overloaded=st.booleans(),
    retry_after=st.none() | st.floats(min_value=0, max_value=1e6),
    seed=st.integers(0, 2**32),
)
def test_delay_bounds(attempt: int, overloaded: bool, retry_after: float | None, seed: int) -> None:
    delay = next_delay(
        DEFAULT_SCHEDULE,
        attempt,
        overloaded=overloaded,
        retry_after=retry_after,
        rng=random.Random(seed),
    )
    assert delay is not None
    base = DEFAULT_SCHEDULE[attempt - 1]
    if overloaded:
        base = max(base, 60.0)
    s = base if retry_after is None else min(max(retry_after, base), 2 * base)
    assert 0.8 * s <= delay <= 1.2 * s


def test_exhausted_after_the_schedule() -> None:
    assert next_delay(DEFAULT_SCHEDULE, len(DEFAULT_SCHEDULE) + 1) is None
    assert next_delay((), 1) is None


def test_horizon_is_the_sum_within_jitter() -> None:
    rng = random.Random(7)
    total = sum(next_delay(DEFAULT_SCHEDULE, n, rng=rng) or 0 for n in range(1, 8))
    assert 0.8 * sum(DEFAULT_SCHEDULE) <= total <= 1.2 * sum(DEFAULT_SCHEDULE)


@given(st.text(max_size=40))
def test_retry_after_never_raises(value: str) -> None:
    parsed = parse_retry_after(value, NOW)
    assert parsed is None or parsed >= 0


def test_retry_after_forms() -> None:
    assert parse_retry_after("120", NOW) == 120
    assert parse_retry_after("1.5", NOW) == 1.5
    assert parse_retry_after("Tue, 24 Nov 2026 12:10:00 GMT", NOW) == 600
    assert parse_retry_after("-5", NOW) == 0
    assert parse_retry_after("inf", NOW) is None
    assert parse_retry_after("soon", NOW) is None
    assert parse_retry_after(None, NOW) is None
