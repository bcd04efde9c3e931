"""Request validation surfaces as the real 4xx errors through the SDK."""

from __future__ import annotations

import datetime as dt
from typing import Any

import openai
import pytest
from openai import OpenAI
from openai_sim.process import RunningSim

from .conftest import schema_format, vision_input


def test_shut_down_model_is_not_found(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.responses.create(model="o4-mini", input="hi")
    assert info.value.code == "model_not_found"
    assert "`o4-mini` does not exist" in info.value.message
    assert info.value.request_id


def test_deprecated_model_stops_at_its_shutdown_date(client: OpenAI, sim: RunningSim) -> None:
    assert client.responses.create(model="gpt-5-mini", input="hi").status == "completed"
    sim.admin.clock(set_to=dt.datetime(2026, 12, 11, tzinfo=dt.UTC).timestamp())
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="gpt-5-mini", input="hi")
    ids = [m.id for m in client.models.list()]
    assert "gpt-5-mini" not in ids
    assert "gpt-4.1-mini" in ids


def test_effort_not_supported_lists_values(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="gpt-6-luna", input="hi", reasoning={"effort": "minimal"})
    assert info.value.code == "unsupported_value"
    assert info.value.param == "reasoning.effort"
    assert "'none', 'low', 'medium', 'high', 'xhigh', and 'max'" in info.value.message


def test_reasoning_on_non_reasoning_model(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="gpt-4.1-mini", input="hi", reasoning={"effort": "low"})
    assert info.value.code == "unsupported_parameter"


def test_temperature_on_reasoning_model(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="gpt-6-luna", input="hi", temperature=0.2)
    assert info.value.param == "temperature"
    assert client.responses.create(model="gpt-4.1-mini", input="hi", temperature=0.2).temperature


@pytest.mark.parametrize(
    ("schema", "needle"),
    [
        (
            {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
            "'additionalProperties' is required",
        ),
        (
            {
                "type": "object",
                "additionalProperties": False,
                "required": [],
                "properties": {"a": {"type": "string"}},
            },
            "Missing 'a'",
        ),
        (
            {
                "type": "object",
                "additionalProperties": False,
                "required": ["a"],
                "properties": {
                    "a": {
                        "type": "object",
                        "properties": {"b": {"type": "string"}},
                        "required": ["b"],
                    }
                },
            },
            "context=('properties', 'a')",
        ),
    ],
)
def test_invalid_strict_schema(client: OpenAI, schema: dict[str, Any], needle: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="gpt-6-luna", input="hi", text=schema_format(schema))
    assert info.value.code == "invalid_json_schema"
    assert info.value.param == "text.format.schema"
    assert needle in info.value.message


def test_schema_name_pattern(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="gpt-6-luna", input="hi", text=schema_format(name="a b"))
    assert info.value.param == "text.format.name"


def test_max_output_tokens_minimum(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="gpt-6-luna", input="hi", max_output_tokens=15)
    assert info.value.code == "integer_below_min_value"


def test_image_part_needs_exactly_one_source(client: OpenAI) -> None:
    part = {
        "type": "input_image",
        "detail": "low",
        "image_url": "https://a/1.jpg",
        "file_id": "file-1",
    }
    message: Any = [{"role": "user", "content": [part]}]
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="gpt-6-luna", input=message)
    assert info.value.param == "input[0].content[0]"


def test_detail_values_per_model(client: OpenAI) -> None:
    part = {"type": "input_image", "detail": "original", "image_url": "https://a/1.jpg"}
    message: Any = [{"role": "user", "content": [part]}]
    assert client.responses.create(model="gpt-6-luna", input=message).status == "completed"
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="gpt-4.1-mini", input=message)
    assert info.value.param == "input[0].content[0].detail"


def test_metadata_limits(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        client.responses.create(
            model="gpt-6-luna", input="hi", metadata={f"k{i}": "v" for i in range(17)}
        )
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="gpt-6-luna", input="hi", metadata={"k": "v" * 513})
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="gpt-6-luna", input="hi", metadata={"k" * 65: "v"})


@pytest.mark.parametrize("url", ["https://img.example/broken/1.jpg", "https://x/2.broken.jpg"])
def test_broken_image_url(client: OpenAI, sim: RunningSim, url: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="gpt-6-luna", input=vision_input(["https://ok/1.jpg", url]))
    assert info.value.message.endswith(f"Error while downloading {url}.")
    assert (info.value.code, info.value.param) in (
        ("invalid_value", "url"),
        ("invalid_image_url", None),
    )
    (call,) = sim.admin.calls()
    assert call["errored"] is True


def test_timeout_image_url(client: OpenAI) -> None:
    url = "https://img.example/timeout/3.jpg"
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="gpt-6-luna", input=vision_input([url]))
    assert info.value.code == "invalid_image_url"
    assert f"Timeout while downloading {url}." in info.value.message


def test_bad_api_key(sim: RunningSim) -> None:
    with (
        OpenAI(
            base_url=sim.base_url, api_key="nope", max_retries=0, _strict_response_validation=True
        ) as bad_client,
        pytest.raises(openai.AuthenticationError) as info,
    ):
        bad_client.responses.create(model="gpt-6-luna", input="hi")
    assert info.value.code == "invalid_api_key"


def test_unknown_route_is_404(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.get("/chat/nothing", cast_to=object)
    assert "Invalid URL" in info.value.message
