"""One simulator subprocess per session; every test starts from a reset simulator."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from openai import OpenAI
from openai_sim.process import RunningSim, running

VISION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["parts", "image_indexes", "seen_images", "severity", "ok"],
    "properties": {
        "parts": {"type": "array", "items": {"type": "string"}},
        "image_indexes": {"type": "array", "items": {"type": "integer"}},
        "seen_images": {"type": "array", "items": {"type": "string"}},
        "severity": {"type": "string", "enum": ["none", "minor", "major"]},
        "ok": {"type": "boolean"},
    },
}


def vision_input(urls: list[str], text: str = "Lot 81234. Describe damage.") -> list[Any]:
    parts: list[dict[str, Any]] = [{"type": "input_text", "text": text}]
    parts += [{"type": "input_image", "image_url": u, "detail": "low"} for u in urls]
    return [{"role": "user", "content": parts}]


def schema_format(schema: dict[str, Any] | None = None, name: str = "report") -> Any:
    return {
        "format": {
            "type": "json_schema",
            "name": name,
            "strict": True,
            "schema": schema or VISION_SCHEMA,
        }
    }


@pytest.fixture(scope="session")
def sim_process() -> Iterator[RunningSim]:
    with running() as sim:
        yield sim


@pytest.fixture
def sim(sim_process: RunningSim) -> RunningSim:
    sim_process.admin.reset()
    return sim_process


@pytest.fixture
def client(sim: RunningSim) -> Iterator[OpenAI]:
    with OpenAI(
        base_url=sim.base_url,
        api_key="sk-test",
        max_retries=0,
        _strict_response_validation=True,
    ) as c:
        yield c
