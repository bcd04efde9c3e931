"""Rate-limit headers (O5) and the client-side throttle."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest
from gen_common import ratelimits
from hypothesis import given, settings
from hypothesis import strategies as st

# -- header parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("6m0s", 360.0),
        ("1h2m3.5s", 3723.5),
        ("12ms", 0.012),
        ("1s", 1.0),
        ("0s", 0.0),
        ("1.5s", 1.5),
        ("250us", 0.00025),
        ("2", 2.0),
        ("-1", None),
        ("inf", None),
        ("nan", None),
        ("", None),
        ("garbage", None),
        ("5x", None),
        ("1s garbage", None),
        ("s", None),
    ],
)
def test_parse_duration(text: str, seconds: float | None) -> None:
    got = ratelimits.parse_duration(text)
    assert got == (pytest.approx(seconds) if seconds is not None else None)


def test_parse_ratelimit_reads_real_headers_and_tolerates_placeholders() -> None:
    info = ratelimits.parse_ratelimit(
        {
            "x-ratelimit-limit-requests": "500",
            "x-ratelimit-remaining-requests": "499",
            "x-ratelimit-reset-requests": "120ms",
            "x-ratelimit-limit-tokens": "-1",
            "x-ratelimit-remaining-tokens": "0",
            "x-ratelimit-reset-tokens": "6m0s",
        }
    )
    assert (info.limit_requests, info.remaining_requests) == (500, 499)
    assert info.reset_requests_s == pytest.approx(0.12)
    assert info.limit_tokens is None  # Azure's -1 placeholder
    assert info.remaining_tokens == 0
    assert info.reset_tokens_s == 120.0  # clamped


def test_retry_after_prefers_ms_then_seconds_then_http_date() -> None:
    assert ratelimits.retry_after({"retry-after-ms": "2000", "retry-after": "9"}) == 2.0
    assert ratelimits.retry_after({"retry-after-ms": "junk", "retry-after": "9"}) == 9.0
    assert ratelimits.retry_after({"retry-after": "3600"}) == 120.0
    assert ratelimits.retry_after({}) is None
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 <= (ratelimits.retry_after({"retry-after": date}) or 0) <= 31


HEADER_VALUES = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["-1", "0", "6m0s", "1h2m3.5s", "inf", "-inf", "nan", "1e999", "12ms"]),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.from_regex(r"\A(\d{1,20}(\.\d{0,5})?(h|m|s|ms|us|ns)){1,6}\Z"),
)
NAMES = [
    "retry-after",
    "retry-after-ms",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
]


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.sampled_from(NAMES), HEADER_VALUES))
def test_o5_header_parsing_never_raises_and_sleeps_stay_in_bounds(headers: dict[str, str]) -> None:
    wait = ratelimits.retry_after(headers)
    assert wait is None or 0.0 <= wait <= 120.0
    info = ratelimits.parse_ratelimit(headers)
    for value in (info.reset_requests_s, info.reset_tokens_s):
        assert value is None or 0.0 <= value <= 120.0
    throttle = ratelimits.Throttle(ratelimits.ThrottleSettings(), clock=lambda: 0.0)
    throttle.on_response(info, tokens=1000)
    throttle.on_rate_limited(wait)
    assert 0.0 <= throttle.delay() <= 120.0
    assert 0.0 <= throttle.spacing <= 120.0


# -- throttle ------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_throttle_aimd_window() -> None:
    clock = FakeClock()
    t = ratelimits.Throttle(
        ratelimits.ThrottleSettings(start=8, ceiling=10, increase_every=20), clock=clock
    )
    for _ in range(40):
        t.on_response(ratelimits.RateLimitInfo())
    assert t.window == 10
    for _ in range(10):
        t.on_rate_limited(0.5)
    assert t.window == 1  # floor
    t.on_timeout()
    assert t.window == 1


def test_throttle_pauses_everyone_for_retry_after() -> None:
    clock = FakeClock()
    t = ratelimits.Throttle(ratelimits.ThrottleSettings(), clock=clock)
    assert t.delay() == 0
    t.on_rate_limited(2.0)
    assert 2.0 <= t.delay() <= 2.4
    clock.now += 2.5
    assert t.delay() == 0


def test_throttle_paces_at_the_limit_when_remaining_runs_low() -> None:
    t = ratelimits.Throttle(ratelimits.ThrottleSettings(), clock=FakeClock())
    t.on_response(ratelimits.RateLimitInfo(limit_requests=600, remaining_requests=500))
    assert t.spacing == 0
    t.on_response(ratelimits.RateLimitInfo(limit_requests=600, remaining_requests=3))
    assert t.spacing == pytest.approx(0.1)
    info = ratelimits.RateLimitInfo(limit_tokens=60_000, remaining_tokens=1000)
    t.on_response(info, tokens=2000)
    assert t.spacing == pytest.approx(2.0)


async def test_throttle_slot_bounds_concurrency_and_spacing() -> None:
    t = ratelimits.Throttle(ratelimits.ThrottleSettings(start=2, ceiling=2))
    peak = 0
    starts: list[float] = []

    async def call() -> None:
        nonlocal peak
        async with t.slot():
            starts.append(time.monotonic())
            peak = max(peak, t.in_flight)
            await asyncio.sleep(0.02)

    await asyncio.gather(*(call() for _ in range(8)))
    assert peak == 2
    t.spacing = 0.05
    starts.clear()
    await asyncio.gather(*(call() for _ in range(10)))
    # paced at one start per 0.05 s; at most two intervals of catch-up burst
    assert starts[-1] - starts[0] >= 0.05 * (10 - 1 - 2) - 0.005
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert sum(g < 0.045 for g in gaps) <= 2
