"""The one outside call of this stage: assess one lot's images with the Responses API.

What is sent and how the answer is read is :mod:`gen_vision.lot_request` (every valid image
attached, a strict ``json_schema`` answer). Around each HTTP call: the client-side throttle
(pacing, AIMD window), the circuit breaker, and the call log (a row written *before* the call).
In-process retries (tenacity, jittered exponential) only for 429s, which are a rate signal and
cheap to wait out; everything else goes back to the work table with ``next_attempt_at``. An image
OpenAI cannot download (400) is dropped and the call resent without it.
"""

from __future__ import annotations

import time
from importlib import resources
from typing import Any, Protocol

import openai
from gen_common import llm, llm_answer, ratelimits
from gen_common.breaker import Breaker, outcome_of
from gen_common.errors import (
    BreakerOpen,
    GenError,
    PermanentError,
    RateLimited,
)
from gen_common.events import TokenUsage
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from gen_vision import lot_request
from gen_vision.images import enforce_threshold
from gen_vision.lot_request import LotRequest, ModelResult
from gen_vision.settings import ModelPrice, VisionOptions


def load_prompt(override: str = "") -> str:
    if override.strip():
        return override
    return resources.files("gen_vision").joinpath("prompt.md").read_text(encoding="utf-8")


class CallNotWanted(PermanentError):
    """The call log refused the call: the job or lot was cancelled after the claim (or the lease
    was lost). No model call is made; the worker cancels its row without an event."""

    code = "cancelled"


class CallLog(Protocol):
    async def started(self, images: list[str]) -> int: ...
    async def finished(self, call_id: int, outcome: str, response_id: str | None) -> None: ...


class Assessor(Protocol):
    async def assess(self, lot: LotRequest, calls: CallLog) -> ModelResult: ...


def cost_usd(usage: TokenUsage, price: ModelPrice | None, *, discount: float = 1.0) -> float:
    if price is None:
        return 0.0
    fresh = max(0, usage.input_tokens - usage.cached_tokens)
    total = (
        fresh * price.input + usage.cached_tokens * price.cached_input
    ) + usage.output_tokens * price.output
    return round(total * discount / 1_000_000, 6)


def _is_rate_limit(exc: BaseException) -> bool:
    return isinstance(exc, RateLimited) and not isinstance(exc, llm.QuotaExhausted)


class OpenAIAssessor:
    def __init__(
        self,
        client: openai.AsyncOpenAI,
        *,
        breaker: Breaker,
        throttle: ratelimits.Throttle,
        options: VisionOptions,
        prompt: str,
    ) -> None:
        self._client = client
        self._breaker = breaker
        self._throttle = throttle
        self._options = options
        self._prompt = prompt

    async def assess(self, lot: LotRequest, calls: CallLog) -> ModelResult:
        o = self._options
        for _ in range(o.image_retries + 1):
            try:
                return await self._with_rate_retries(lot, calls)
            except llm.ImageDownloadFailed as exc:
                if not exc.url or exc.url not in lot.images:
                    raise
                lot.images.remove(exc.url)
                lot.refused.append(exc.url)
                enforce_threshold(lot.all_images, lot.missing_images, o.images.max_unreachable)
        raise llm.ImageDownloadFailed("too many images OpenAI could not download")

    async def _with_rate_retries(self, lot: LotRequest, calls: CallLog) -> ModelResult:
        retrying = AsyncRetrying(
            retry=retry_if_exception(_is_rate_limit),
            stop=stop_after_attempt(self._options.rate_limit_retries + 1),
            wait=wait_random_exponential(multiplier=0.25, max=5.0),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._call(lot, calls)
        raise AssertionError("unreachable")  # pragma: no cover

    def request(self, lot: LotRequest) -> dict[str, Any]:
        """The request body this assessor sends for ``lot`` (the Batch API path sends it too)."""
        return lot_request.body(lot, self._options, self._prompt)

    async def _call(self, lot: LotRequest, calls: CallLog) -> ModelResult:
        request = self.request(lot)
        async with self._throttle.slot():
            if not self._breaker.allow():
                raise BreakerOpen("circuit breaker open")
            try:
                call_id = await calls.started(list(lot.images))  # raises CallNotWanted
            except CallNotWanted:
                self._breaker.record_ignored()  # a half-open probe gives its permit back
                raise
            started = time.monotonic()
            try:
                # The deep parts (the schema, the image list) go as extra_body: the SDK would
                # otherwise walk them through its TypedDict transform, ~3 ms of CPU per call.
                raw = await self._client.responses.with_raw_response.create(
                    model=request.pop("model"), extra_body=request
                )
                response = llm_answer.answer_of(raw.http_response.content)  # not raw.parse(): CPU
            except (openai.OpenAIError, ValueError) as exc:
                error = llm.classify(exc)
                self._breaker.record(outcome_of(error), time.monotonic() - started)
                if isinstance(error, RateLimited) and not isinstance(error, llm.QuotaExhausted):
                    self._throttle.on_rate_limited(error.retry_after)
                elif isinstance(exc, openai.APITimeoutError):
                    self._throttle.on_timeout()
                await calls.finished(call_id, error.code, None)
                raise error from exc
            self._breaker.record_success(time.monotonic() - started)
        usage = lot_request.usage_of(response)
        self._throttle.on_response(
            ratelimits.parse_ratelimit(raw.headers), tokens=usage.input_tokens + usage.output_tokens
        )
        try:
            o = self._options
            priced = usage.model_copy(update={"cost_usd": cost_usd(usage, o.prices.get(o.model))})
            result = lot_request.result_of(response, lot, priced)
        except GenError as error:
            await calls.finished(call_id, error.code, response.id)
            raise
        await calls.finished(call_id, "ok", response.id)
        return result
