"""The translation call against the real simulator (a subprocess), through the official SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from gen_common import llm, ratelimits
from gen_common.errors import (
    InvalidModelOutput,
    PermanentError,
    RateLimited,
    UpstreamUnavailable,
)
from gen_common.settings import OpenAISettings
from gen_translate.describe import OpenAIDescriber, cost_usd, packaged_prompt
from gen_translate.settings import TranslateOptions
from openai import AsyncOpenAI
from openai_sim.process import RunningSim
from pydantic import SecretStr

from .conftest import DESCRIPTION_EN

META = {"job_id": "j1", "lot_seq": "0", "target_language": "ru"}


@pytest.fixture
async def client(sim: RunningSim) -> AsyncIterator[AsyncOpenAI]:
    settings = OpenAISettings(api_key=SecretStr("sk-test"), base_url=sim.base_url, max_retries=0)
    async with llm.client(settings) as c:
        yield c


def describer(client: AsyncOpenAI, **options: object) -> OpenAIDescriber:
    opts = TranslateOptions(**options)
    return OpenAIDescriber(client, opts, ratelimits.Throttle(opts.throttle))


async def test_translation_text_usage_and_request(client: AsyncOpenAI, sim: RunningSim) -> None:
    result = await describer(client).translate(
        text=DESCRIPTION_EN, language="ru", metadata=META, timeout_s=None
    )
    assert result.text == f"[ru] {DESCRIPTION_EN}"
    assert result.model == "gpt-6-luna"
    assert result.response_id
    assert result.usage.input_tokens > 0
    assert result.usage.output_tokens > 0
    assert result.usage.cost_usd == cost_usd(result.usage, TranslateOptions().prices["gpt-6-luna"])
    assert result.usage.cost_usd > 0
    [call] = sim.admin.calls()
    assert call["metadata"] == META
    assert call["model"] == "gpt-6-luna"


def test_prompt_keeps_paragraphs_and_asks_for_only_the_translation() -> None:
    prompt = packaged_prompt()
    assert "<p>" in prompt
    assert "output only the translation" in prompt


async def test_language_comes_from_the_input_text(client: AsyncOpenAI) -> None:
    """Without metadata the simulator reads ``target language: <code>`` from the input."""
    result = await describer(client).translate(
        text="<p>Rust on sill.</p>", language="pt-BR", metadata={}, timeout_s=None
    )
    assert result.text == "[pt-BR] <p>Rust on sill.</p>"


async def test_refusal_is_permanent(client: AsyncOpenAI) -> None:
    with pytest.raises(InvalidModelOutput) as info:
        await describer(client).translate(
            text="<p>[[refuse]]</p>", language="de", metadata=META, timeout_s=None
        )
    assert info.value.code == "refusal"


async def test_truncated_answer_is_permanent(client: AsyncOpenAI) -> None:
    with pytest.raises(InvalidModelOutput) as info:
        await describer(client, max_output_tokens=16).translate(
            text=DESCRIPTION_EN * 20, language="de", metadata=META, timeout_s=None
        )
    assert info.value.code == "incomplete_output"


async def test_errors_are_sorted_into_the_error_tree(client: AsyncOpenAI, sim: RunningSim) -> None:
    d = describer(client)
    sim.admin.config({"storm": {"kind": "429", "duration_s": 30, "retry_after_ms": 1500}})
    with pytest.raises(RateLimited) as limited:
        await d.translate(text=DESCRIPTION_EN, language="ru", metadata=META, timeout_s=None)
    assert limited.value.retry_after == pytest.approx(1.5)
    sim.admin.config({"storm": {"kind": "503", "duration_s": 30}})
    with pytest.raises(UpstreamUnavailable):
        await d.translate(text=DESCRIPTION_EN, language="ru", metadata=META, timeout_s=None)
    sim.admin.reset()
    with pytest.raises(PermanentError):
        await describer(client, model="o4-mini").translate(
            text=DESCRIPTION_EN, language="ru", metadata=META, timeout_s=None
        )


async def test_call_timeout_is_retryable(client: AsyncOpenAI, sim: RunningSim) -> None:
    sim.admin.config({"latency": {"kinds": {"text": {"dist": "fixed", "ms": 3000}}}})
    with pytest.raises(UpstreamUnavailable):
        await describer(client).translate(
            text=DESCRIPTION_EN, language="ru", metadata=META, timeout_s=0.3
        )


async def test_rate_limit_headers_and_429s_pace_the_throttle(
    client: AsyncOpenAI, sim: RunningSim
) -> None:
    sim.admin.config({"rate_limits": {"models": {"gpt-6-luna": {"rpm": 10, "tpm": 10_000_000}}}})
    opts = TranslateOptions()
    throttle = ratelimits.Throttle(opts.throttle)
    d = OpenAIDescriber(client, opts, throttle)
    await d.translate(text=DESCRIPTION_EN, language="ru", metadata=META, timeout_s=None)
    assert throttle.spacing == pytest.approx(60.0 / 10)  # 9 of 10 requests left: pace them
    window = throttle.window
    sim.admin.config({"storm": {"kind": "429", "duration_s": 30, "retry_after_ms": 1000}})
    with pytest.raises(RateLimited):
        await d.translate(text=DESCRIPTION_EN, language="ru", metadata=META, timeout_s=None)
    assert throttle.rate_limited == 1
    assert throttle.window == window / 2
    assert throttle.delay() > 0.5  # every caller now waits for the retry-after
