"""The assessor alone against the simulator: request shape, usage and cost, image refusals."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from gen_common.events import TokenUsage
from gen_vision import assess, lot_request
from gen_vision.settings import ModelPrice
from openai_sim.process import RunningSim

from .conftest import Stack

pytestmark = pytest.mark.pg  # make_deps builds the worker's Deps around the session pool


class CallLog:
    """An in-memory call log (the worker's is a vision_calls row per call)."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.outcomes: list[tuple[int, str, str | None]] = []

    async def started(self, images: list[str]) -> int:
        self.calls.append(images)
        return len(self.calls)

    async def finished(self, call_id: int, outcome: str, response_id: str | None) -> None:
        self.outcomes.append((call_id, outcome, response_id))


def request(images: list[str]) -> lot_request.LotRequest:
    return lot_request.LotRequest(
        job_id=str(uuid.uuid4()),
        lot_seq=3,
        lot_id="A-1",
        all_images=list(images),
        images=list(images),
        missing=[],
        additional_info="runs fine",
    )


def test_cost_uses_the_price_table_and_the_cached_rate() -> None:
    usage = TokenUsage(input_tokens=1_000_000, cached_tokens=400_000, output_tokens=200_000)
    price = ModelPrice(input=0.10, cached_input=0.01, output=0.50)
    assert assess.cost_usd(usage, price) == pytest.approx(0.06 + 0.004 + 0.10)
    assert assess.cost_usd(usage, price, discount=0.5) == pytest.approx(0.082)
    assert assess.cost_usd(usage, None) == 0.0


def test_prompt_is_packaged_and_overridable() -> None:
    assert "damage" in assess.load_prompt()
    assert assess.load_prompt("Be brief.") == "Be brief."


async def test_assess_sends_every_image_and_costs_the_answer(
    sim: RunningSim, make_deps: Callable[..., Any]
) -> None:
    stack: Stack = await make_deps()
    images = [f"https://img.example/{i}.jpg" for i in range(3)]
    lot = request(images)
    log = CallLog()
    result = await stack.deps.assessor.assess(lot, log)
    assert result.images == images
    assert result.model == "gpt-6-luna"
    assert result.usage.input_tokens > 0
    price = stack.deps.options.prices["gpt-6-luna"]
    assert result.usage.cost_usd == assess.cost_usd(result.usage, price)
    assert result.assessment["image_urls"] == images
    assert result.html.startswith("<p>Overall condition: ")
    [call] = sim.admin.calls()
    assert call["image_urls"] == images
    assert call["metadata"] == {"job_id": lot.job_id, "lot_seq": "3"}
    assert log.outcomes == [(1, "ok", result.response_id)]


async def test_a_refused_image_is_dropped_and_the_call_resent(
    sim: RunningSim, make_deps: Callable[..., Any]
) -> None:
    stack: Stack = await make_deps()
    ok, broken = "https://img.example/ok.jpg", "https://img.example/broken/1.jpg"
    fine = [ok, *(ok.replace("ok", f"ok{i}") for i in range(2, 4))]
    lot = request([*fine, broken])  # 1 of 4 refused: within the 30 % threshold
    log = CallLog()
    result = await stack.deps.assessor.assess(lot, log)
    assert lot.refused == [broken]
    assert lot.missing_images == [broken]
    assert result.images == fine
    assert [o for _, o, _ in log.outcomes] == ["image_download_failed", "ok"]
    assert [c["image_count"] for c in sim.admin.calls()] == [4, 3]
    assert log.calls == [[*fine, broken], fine]


async def test_non_reasoning_model_gets_no_reasoning_parameter(
    sim: RunningSim, make_deps: Callable[..., Any]
) -> None:
    stack: Stack = await make_deps(model="gpt-4.1-mini", reasoning_effort=None)
    result = await stack.deps.assessor.assess(request(["https://img.example/a.jpg"]), CallLog())
    assert result.model.startswith("gpt-4.1-mini")
