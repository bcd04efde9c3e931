"""OpenAI plumbing: client options, error sorting (against the real simulator), header parsing
(hypothesis, catalogue O5), retry delays and the client-side throttle."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import openai
import pytest
from gen_common import llm
from gen_common.errors import (
    InvalidModelOutput,
    PermanentError,
    RateLimited,
    UpstreamUnavailable,
)
from gen_common.settings import OpenAISettings
from hypothesis import given, settings
from hypothesis import strategies as st
from openai_sim.process import RunningSim, free_port, running
from pydantic import SecretStr

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
    got = llm.parse_duration(text)
    assert got == (pytest.approx(seconds) if seconds is not None else None)


def test_parse_ratelimit_reads_real_headers_and_tolerates_placeholders() -> None:
    info = llm.parse_ratelimit(
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
    assert llm.retry_after({"retry-after-ms": "2000", "retry-after": "9"}) == 2.0
    assert llm.retry_after({"retry-after-ms": "junk", "retry-after": "9"}) == 9.0
    assert llm.retry_after({"retry-after": "3600"}) == 120.0
    assert llm.retry_after({}) is None
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 <= (llm.retry_after({"retry-after": date}) or 0) <= 31


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
    wait = llm.retry_after(headers)
    assert wait is None or 0.0 <= wait <= 120.0
    info = llm.parse_ratelimit(headers)
    for value in (info.reset_requests_s, info.reset_tokens_s):
        assert value is None or 0.0 <= value <= 120.0
    throttle = llm.Throttle(llm.ThrottleSettings(), clock=lambda: 0.0)
    throttle.on_response(info, tokens=1000)
    throttle.on_rate_limited(wait)
    assert 0.0 <= throttle.delay() <= 120.0
    assert 0.0 <= throttle.spacing <= 120.0


# -- retry delays --------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 50), st.floats(0, 500), st.integers(0, 2**32))
def test_retry_delay_is_jittered_exponential_and_honours_retry_after(
    attempt: int, server: float, seed: int
) -> None:
    rng = random.Random(seed)
    exp = min(300.0, 2.0 * 2 ** (attempt - 1))
    plain = llm.retry_delay(UpstreamUnavailable("x"), attempt, rng=rng)
    assert exp / 2 <= plain <= exp
    limited = llm.retry_delay(RateLimited("x", retry_after=server), attempt, rng=rng)
    if server > 0:
        assert min(server, 300.0) <= limited <= 300.0
    quota = llm.retry_delay(llm.QuotaExhausted("x"), attempt, rng=rng, quota_s=600)
    assert quota >= 600


# -- the client and error sorting against the simulator -------------------------------------------


@pytest.fixture(scope="module")
def sim_process() -> Iterator[RunningSim]:
    with running() as sim:
        yield sim


@pytest.fixture
def sim(sim_process: RunningSim) -> RunningSim:
    sim_process.admin.reset()
    return sim_process


@pytest.fixture
async def client(sim: RunningSim) -> AsyncIterator[openai.AsyncOpenAI]:
    c = llm.client(
        OpenAISettings(
            api_key=SecretStr("sk-test"), base_url=sim.base_url, max_retries=0, timeout_s=2.0
        )
    )
    async with c:
        yield c


def test_client_has_explicit_timeout_and_retries() -> None:
    c = llm.client(OpenAISettings(timeout_s=120, connect_timeout_s=5, max_retries=1))
    assert isinstance(c.timeout, openai.Timeout)
    assert (c.timeout.read, c.timeout.connect) == (120, 5)
    assert c.max_retries == 1


async def _error(client: openai.AsyncOpenAI, **kw: Any) -> openai.OpenAIError | ValueError:
    args: dict[str, Any] = {"model": "gpt-6-luna", "input": "hi", **kw}
    try:
        await client.responses.create(**args)
    except (openai.OpenAIError, ValueError) as exc:
        return exc
    raise AssertionError("no error")


async def test_429_storm_is_rate_limited_with_retry_after(
    client: openai.AsyncOpenAI, sim: RunningSim
) -> None:
    sim.admin.config({"storm": {"kind": "429", "duration_s": 30, "retry_after_ms": 2000}})
    err = llm.classify(await _error(client))
    assert isinstance(err, RateLimited)
    assert not isinstance(err, llm.QuotaExhausted)
    assert err.retry_after == 2.0


async def test_insufficient_quota_is_its_own_retryable_error(
    client: openai.AsyncOpenAI, sim: RunningSim
) -> None:
    sim.admin.config({"rate_limits": {"insufficient_quota": True}})
    err = llm.classify(await _error(client))
    assert isinstance(err, llm.QuotaExhausted)
    assert err.breaker_failure


@pytest.mark.parametrize("kind", ["500", "503"])
async def test_5xx_is_upstream_unavailable(
    client: openai.AsyncOpenAI, sim: RunningSim, kind: str
) -> None:
    sim.admin.config({"storm": {"kind": kind, "duration_s": 30}})
    assert isinstance(llm.classify(await _error(client)), UpstreamUnavailable)


async def test_timeout_and_refused_connection_are_upstream_unavailable(
    client: openai.AsyncOpenAI, sim: RunningSim
) -> None:
    sim.admin.config({"latency": {"default": {"dist": "fixed", "ms": 3000}}})
    assert isinstance(llm.classify(await _error(client)), UpstreamUnavailable)
    dead = llm.client(OpenAISettings(base_url=f"http://127.0.0.1:{free_port()}/v1", max_retries=0))
    async with dead:
        assert isinstance(llm.classify(await _error(dead)), UpstreamUnavailable)


async def test_malformed_body_is_invalid_model_output(
    client: openai.AsyncOpenAI, sim: RunningSim
) -> None:
    sim.admin.config({"faults": {"malformed": 1.0}})
    assert isinstance(llm.classify(await _error(client)), InvalidModelOutput)


async def test_other_4xx_are_permanent(client: openai.AsyncOpenAI) -> None:
    err = llm.classify(await _error(client, model="o4-mini"))  # shut down -> 404
    assert type(err) is PermanentError
    assert err.code == "openai_404"
    err = llm.classify(await _error(client, max_output_tokens=1))
    assert type(err) is PermanentError
    assert err.code == "openai_400"


@pytest.mark.parametrize("n", range(6))
async def test_image_download_400_names_the_url_in_both_shapes(
    client: openai.AsyncOpenAI, n: int
) -> None:
    bad = f"https://img.example/broken/{n}.jpg"
    parts = [{"type": "input_text", "text": "look"}]
    parts += [
        {"type": "input_image", "image_url": u, "detail": "low"}
        for u in ("https://img.example/ok.jpg", bad)
    ]
    err = llm.classify(await _error(client, input=[{"role": "user", "content": parts}]))
    assert isinstance(err, llm.ImageDownloadFailed)
    assert err.url == bad


# -- throttle ------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_throttle_aimd_window() -> None:
    clock = FakeClock()
    t = llm.Throttle(llm.ThrottleSettings(start=8, ceiling=10, increase_every=20), clock=clock)
    for _ in range(40):
        t.on_response(llm.RateLimitInfo())
    assert t.window == 10
    for _ in range(10):
        t.on_rate_limited(0.5)
    assert t.window == 1  # floor
    t.on_timeout()
    assert t.window == 1


def test_throttle_pauses_everyone_for_retry_after() -> None:
    clock = FakeClock()
    t = llm.Throttle(llm.ThrottleSettings(), clock=clock)
    assert t.delay() == 0
    t.on_rate_limited(2.0)
    assert 2.0 <= t.delay() <= 2.4
    clock.now += 2.5
    assert t.delay() == 0


def test_throttle_paces_at_the_limit_when_remaining_runs_low() -> None:
    t = llm.Throttle(llm.ThrottleSettings(), clock=FakeClock())
    t.on_response(llm.RateLimitInfo(limit_requests=600, remaining_requests=500))
    assert t.spacing == 0
    t.on_response(llm.RateLimitInfo(limit_requests=600, remaining_requests=3))
    assert t.spacing == pytest.approx(0.1)
    info = llm.RateLimitInfo(limit_tokens=60_000, remaining_tokens=1000)
    t.on_response(info, tokens=2000)
    assert t.spacing == pytest.approx(2.0)


async def test_throttle_slot_bounds_concurrency_and_spacing() -> None:
    t = llm.Throttle(llm.ThrottleSettings(start=2, ceiling=2))
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
