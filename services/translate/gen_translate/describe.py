"""The one outside call of the translate stage: one Responses API call per (lot, language).

The instructions come from ``prompt.md`` (or the setting); the input names the target language as
``target language: <code>`` and carries the English HTML as its last text part. Only the text is
translated; the structured assessment's taxonomy codes never pass through here.

The call is ``responses.with_raw_response.create`` with the fields as ``extra_body`` (typed as the
SDK's own ``ResponseCreateParamsNonStreaming``, checked by mypy): the SDK would otherwise run its
runtime TypedDict transform over them, an identity here that cost ~0.7 ms of CPU per call (2.0
vs 1.3 ms measured against the simulator). The raw response gives the ``x-ratelimit-*`` headers
for the shared client-side throttle (:class:`gen_common.ratelimits.Throttle`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol, cast

import openai
from gen_common import llm, llm_answer, ratelimits
from gen_common.errors import InvalidModelOutput, RateLimited
from gen_common.events import TokenUsage
from openai import NOT_GIVEN, AsyncOpenAI
from openai.types.responses import Response
from openai.types.responses.response_create_params import ResponseCreateParamsNonStreaming
from openai.types.shared_params import Reasoning

from gen_translate.settings import ModelPrice, TranslateOptions


@dataclass(frozen=True, slots=True)
class Translation:
    text: str
    model: str
    response_id: str
    usage: TokenUsage


AfterWait = Callable[[], Awaitable[None]]


class Describer(Protocol):
    async def translate(
        self,
        *,
        text: str,
        language: str,
        metadata: dict[str, str],
        timeout_s: float | None,
        after_wait: AfterWait | None = None,
    ) -> Translation: ...


def packaged_prompt() -> str:
    return resources.files("gen_translate").joinpath("prompt.md").read_text().strip()


def request_input(text: str, language: str) -> list[Any]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": f"target language: {language}"},
                {"type": "input_text", "text": text},
            ],
        }
    ]


def cost_usd(usage: TokenUsage, price: ModelPrice | None) -> float:
    if price is None:
        return 0.0
    fresh = max(usage.input_tokens - usage.cached_tokens, 0)
    total = (
        fresh * price.input
        + usage.cached_tokens * price.cached_input
        + usage.output_tokens * price.output
    )
    return round(total / 1_000_000, 6)


def usage_of(response: Response, price: ModelPrice | None) -> TokenUsage:
    u = response.usage
    if u is None:
        return TokenUsage()
    usage = TokenUsage(
        input_tokens=u.input_tokens or 0,
        cached_tokens=getattr(u.input_tokens_details, "cached_tokens", 0) or 0,
        output_tokens=u.output_tokens or 0,
        reasoning_tokens=getattr(u.output_tokens_details, "reasoning_tokens", 0) or 0,
    )
    return usage.model_copy(update={"cost_usd": cost_usd(usage, price)})


def translation_of(response: Response) -> str:
    """The answer's text; a refusal, truncation or empty answer is a permanent failure."""
    for item in response.output:
        if item.type == "message":
            for part in item.content:
                if part.type == "refusal":
                    raise InvalidModelOutput("the model refused to translate", code="refusal")
    if response.status == "incomplete":
        reason = response.incomplete_details.reason if response.incomplete_details else None
        raise InvalidModelOutput(f"incomplete answer: {reason}", code="incomplete_output")
    text = response.output_text.strip()
    if not text:
        raise InvalidModelOutput("empty answer", code="empty_output")
    return text


class OpenAIDescriber:
    """Translations through POST /v1/responses, paced by the throttle; SDK errors are raised as
    members of :mod:`gen_common.errors`, sorted by :func:`gen_common.llm.classify`."""

    def __init__(
        self, client: AsyncOpenAI, options: TranslateOptions, throttle: ratelimits.Throttle
    ) -> None:
        self._client = client
        self._options = options
        self._throttle = throttle
        self._instructions = options.instructions or packaged_prompt()

    async def translate(
        self,
        *,
        text: str,
        language: str,
        metadata: dict[str, str],
        timeout_s: float | None,
        after_wait: AfterWait | None = None,
    ) -> Translation:
        """``after_wait`` runs inside the throttle slot right before the request, only when the
        call had to wait for the slot (what the caller checked before may be stale); it raises to
        stop the call (e.g. the job was cancelled while the worker waited)."""
        opts = self._options
        body: ResponseCreateParamsNonStreaming = {
            "instructions": self._instructions,
            "input": request_input(text, language),
            "max_output_tokens": opts.max_output_tokens,
            "store": False,
            "metadata": metadata,
        }
        if opts.reasoning_effort:
            body["reasoning"] = Reasoning(effort=opts.reasoning_effort)
        async with self._throttle.slot() as waited:
            if waited and after_wait is not None:
                await after_wait()
            try:
                raw = await self._client.responses.with_raw_response.create(
                    model=opts.model,
                    extra_body=body,
                    timeout=NOT_GIVEN if timeout_s is None else timeout_s,
                )
                # the SDK's model construction (raw.parse()) cost ~0.7 ms of CPU per call
                response = cast(Response, llm_answer.answer_of(raw.http_response.content))
            except (openai.OpenAIError, ValueError) as exc:
                error = llm.classify(exc)
                if isinstance(error, RateLimited) and not isinstance(error, llm.QuotaExhausted):
                    self._throttle.on_rate_limited(error.retry_after)
                elif isinstance(exc, openai.APITimeoutError):
                    self._throttle.on_timeout()
                raise error from exc
        price = opts.prices.get(opts.model) or opts.prices.get(response.model)
        usage = usage_of(response, price)
        self._throttle.on_response(
            ratelimits.parse_ratelimit(raw.headers), tokens=usage.input_tokens + usage.output_tokens
        )
        return Translation(
            text=translation_of(response),
            model=response.model,
            response_id=response.id,
            usage=usage,
        )
