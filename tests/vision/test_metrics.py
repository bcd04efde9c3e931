"""The optional /metrics endpoint shows the live breaker state."""

from __future__ import annotations

import asyncio
import urllib.request

from gen_common.breaker import Breaker, BreakerSettings
from gen_vision import metrics
from openai_sim.process import free_port

from tests.harness.processes import eventually


async def test_metrics_follow_the_breaker() -> None:
    breaker = Breaker(BreakerSettings(minimum_calls=1, window=1))
    port = free_port()
    task = asyncio.create_task(metrics.serve(port, breaker, interval_s=0.02))

    def scrape() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            return str(r.read().decode())

    async def shows(line: str) -> bool:
        try:
            return line in (await asyncio.to_thread(scrape)).splitlines()
        except OSError:
            return False

    try:
        await eventually(lambda: shows("vision_breaker_state 0.0"), timeout=10)
        breaker.record_failure()
        await eventually(lambda: shows("vision_breaker_state 2.0"), timeout=10)
        assert await shows("vision_breaker_trips 1.0")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
