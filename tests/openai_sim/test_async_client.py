"""AsyncOpenAI against the simulator: concurrent calls, faults and retry counting."""

from __future__ import annotations

import asyncio
import json

import openai
import pytest
from openai import AsyncOpenAI
from openai_sim.process import RunningSim

from .conftest import schema_format, vision_input


async def test_concurrent_vision_calls(sim: RunningSim) -> None:
    async with AsyncOpenAI(
        base_url=sim.base_url, api_key="sk-test", max_retries=0, _strict_response_validation=True
    ) as client:
        results = await asyncio.gather(
            *(
                client.responses.create(
                    model="gpt-6-luna",
                    input=vision_input([f"https://img/{i}/a.jpg", f"https://img/{i}/b.jpg"]),
                    text=schema_format(),
                    metadata={"lot_id": str(i)},
                )
                for i in range(20)
            )
        )
    for i, resp in enumerate(results):
        data = json.loads(resp.output_text)
        assert data["seen_images"] == [f"https://img/{i}/a.jpg", f"https://img/{i}/b.jpg"]
    calls = sim.admin.calls()
    assert sorted(int(c["metadata"]["lot_id"]) for c in calls) == list(range(20))
    assert {c["image_count"] for c in calls} == {2}


async def test_async_503_retries_are_counted(sim: RunningSim) -> None:
    sim.admin.config({"storm": {"kind": "503", "duration_s": 30, "retry_after_ms": 5}})
    async with AsyncOpenAI(
        base_url=sim.base_url, api_key="sk-test", max_retries=3, _strict_response_validation=True
    ) as client:
        with pytest.raises(openai.InternalServerError):
            await client.responses.create(model="gpt-6-luna", input="hi")
    stats = sim.admin.stats()
    assert stats["models"]["gpt-6-luna"]["calls"] == 4
    assert stats["models"]["gpt-6-luna"]["retried_calls"] == 3
    assert stats["endpoints"]["responses"]["status"] == {"503": 4}
