"""OpenAI plumbing: client options, error sorting (against the real simulator), retry delays."""

from __future__ import annotations

import random
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
