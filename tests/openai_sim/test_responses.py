"""POST /v1/responses round-trips: schema instances, translations, refusals, usage, headers."""

from __future__ import annotations

import json
from typing import Literal

from openai import OpenAI
from openai_sim.process import RunningSim

from .conftest import VISION_SCHEMA, schema_format, vision_input

URLS = [f"https://img.example/lot1/{i}.jpg" for i in range(5)]


def test_strict_schema_instance_reflects_every_image(client: OpenAI, sim: RunningSim) -> None:
    resp = client.responses.create(
        model="gpt-6-luna",
        input=vision_input(URLS),
        reasoning={"effort": "low"},
        max_output_tokens=4000,
        text=schema_format(),
        metadata={"lot_id": "81234"},
        store=False,
    )
    assert resp.status == "completed"
    assert resp.output[0].type == "reasoning"
    assert resp.output[1].type == "message"
    data = json.loads(resp.output_text)
    assert set(data) == set(VISION_SCHEMA["properties"])
    assert data["image_indexes"] == [0, 1, 2, 3, 4]
    assert data["seen_images"] == URLS
    assert data["severity"] in ("none", "minor", "major")
    assert resp.metadata == {"lot_id": "81234"}
    assert resp.usage is not None
    assert resp.usage.output_tokens_details.reasoning_tokens > 0
    assert resp.usage.total_tokens == resp.usage.input_tokens + resp.usage.output_tokens
    (call,) = sim.admin.calls()
    assert call["model"] == "gpt-6-luna"
    assert call["metadata"] == {"lot_id": "81234"}
    assert call["image_urls"] == URLS
    assert call["image_count"] == 5
    assert call["errored"] is False


def test_same_request_gives_same_content(client: OpenAI) -> None:
    first, second = (
        client.responses.create(
            model="gpt-5.4-mini", input=vision_input(URLS[:2]), text=schema_format()
        )
        for _ in range(2)
    )
    assert first.output_text == second.output_text
    assert first.id != second.id


def test_translation_is_marked_with_target_language(client: OpenAI) -> None:
    resp = client.responses.create(
        model="gpt-6-luna",
        instructions="Translate the listing. Target language: de",
        input=[{"role": "user", "content": [{"type": "input_text", "text": "Blue car, no rust"}]}],
        reasoning={"effort": "none"},
    )
    assert resp.output_text == "[de] Blue car, no rust"
    assert resp.usage is not None
    assert resp.usage.output_tokens_details.reasoning_tokens == 0


def test_translation_language_from_metadata(client: OpenAI) -> None:
    resp = client.responses.create(
        model="gpt-4.1-mini", input="Red van", metadata={"target_language": "fr"}
    )
    assert resp.output_text == "[fr] Red van"
    assert resp.model == "gpt-4.1-mini-2025-04-14"
    assert resp.output[0].type == "message"


def test_refusal(client: OpenAI) -> None:
    resp = client.responses.create(model="gpt-6-luna", input="please [[refuse]] this")
    message = resp.output[-1]
    assert message.type == "message"
    assert message.content[0].type == "refusal"
    assert resp.output_text == ""


def test_incomplete_reasoning_only(client: OpenAI) -> None:
    resp = client.responses.create(
        model="gpt-6-luna", input="hi", reasoning={"effort": "high"}, max_output_tokens=16
    )
    assert resp.status == "incomplete"
    assert resp.incomplete_details is not None
    assert resp.incomplete_details.reason == "max_output_tokens"
    assert [item.type for item in resp.output] == ["reasoning"]
    assert resp.output_text == ""
    assert resp.usage is not None
    assert resp.usage.output_tokens == 16


def test_incomplete_truncated_text(client: OpenAI) -> None:
    resp = client.responses.create(
        model="gpt-4.1-mini",
        input="x" * 400,
        metadata={"target_language": "de"},
        max_output_tokens=16,
    )
    assert resp.status == "incomplete"
    assert resp.output[0].type == "message"
    assert resp.output[0].status == "incomplete"


def test_prompt_cache_hits_in_128_steps(client: OpenAI) -> None:
    instructions = "Static assessor instructions. " * 200
    first, second = (
        client.responses.create(
            model="gpt-5.4-mini", instructions=instructions, prompt_cache_key="v3", input=text
        )
        for text in ("lot 1", "lot 2")
    )
    assert first.usage is not None
    assert second.usage is not None
    assert first.usage.input_tokens_details.cached_tokens == 0
    cached = second.usage.input_tokens_details.cached_tokens
    assert cached >= 1024
    assert cached % 128 == 0
    assert cached <= second.usage.input_tokens


def test_headers_on_every_reply(client: OpenAI) -> None:
    raw = client.responses.with_raw_response.create(model="gpt-6-luna", input="hi")
    raw.parse()
    for name in ("x-request-id", "openai-processing-ms", "openai-version"):
        assert raw.headers.get(name)
    assert raw.headers["x-ratelimit-limit-requests"].isdigit()
    assert raw.headers["x-ratelimit-reset-tokens"].endswith("s")


def test_responses_parse_with_pydantic(client: OpenAI) -> None:
    from pydantic import BaseModel

    class Report(BaseModel):
        summary: str
        image_indexes: list[int]

    resp = client.responses.parse(
        model="gpt-6-luna", input=vision_input(URLS[:3]), text_format=Report
    )
    assert resp.output_parsed is not None
    assert resp.output_parsed.image_indexes == [0, 1, 2]


def test_nested_pydantic_schema_with_refs(client: OpenAI) -> None:
    from pydantic import BaseModel

    class Part(BaseModel):
        name: str
        damage: Literal["none", "dent", "scratch"]
        confidence: float | None

    class Assessment(BaseModel):
        parts: list[Part]
        seen_images: list[str]
        image_count: int

    resp = client.responses.parse(
        model="gpt-5.4-mini", input=vision_input(URLS[:2]), text_format=Assessment
    )
    parsed = resp.output_parsed
    assert parsed is not None
    assert parsed.seen_images == URLS[:2]
    assert parsed.image_count == 2
    assert all(p.damage in ("none", "dent", "scratch") for p in parsed.parts)


def test_json_object_format(client: OpenAI) -> None:
    resp = client.responses.create(
        model="gpt-6-luna", input="answer in JSON", text={"format": {"type": "json_object"}}
    )
    assert "result" in json.loads(resp.output_text)
