"""The optional /metrics endpoint of vision and translate shows the live breaker state."""

from __future__ import annotations

import asyncio
import urllib.request

import pytest
from gen_common import breaker_metrics
from gen_common.breaker import Breaker, BreakerSettings
from openai_sim.process import free_port

from tests.harness.processes import eventually


@pytest.mark.parametrize("stage", ["vision", "translate"])
async def test_metrics_follow_the_breaker(stage: str) -> None:
    breaker = Breaker(BreakerSettings(minimum_calls=1, window=1))
    port = free_port()
    task = asyncio.create_task(breaker_metrics.serve(port, breaker, stage=stage, interval_s=0.02))

    def scrape() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            return str(r.read().decode())

    async def shows(line: str) -> bool:
        try:
            return line in (await asyncio.to_thread(scrape)).splitlines()
        except OSError:
            return False

    try:
        await eventually(lambda: shows(f"{stage}_breaker_state 0.0"), timeout=10)
        breaker.record_failure()
        await eventually(lambda: shows(f"{stage}_breaker_state 2.0"), timeout=10)
        assert await shows(f"{stage}_breaker_trips 1.0")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
