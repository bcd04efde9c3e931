"""Optional Prometheus ``/metrics``: breaker state and counters, scraped from the live breaker."""

from __future__ import annotations

import asyncio

from gen_common.breaker import Breaker, State
from prometheus_client import Gauge, start_http_server

_STATES = {State.CLOSED: 0, State.HALF_OPEN: 1, State.OPEN: 2}


async def serve(port: int, breaker: Breaker, *, interval_s: float = 5.0) -> None:
    state = Gauge("vision_breaker_state", "0 closed, 1 half-open, 2 open")
    trips = Gauge("vision_breaker_trips", "times the breaker opened")
    rejected = Gauge("vision_breaker_rejected", "calls refused by the breaker")
    server, thread = start_http_server(port)
    try:
        while True:
            state.set(_STATES[breaker.state])
            trips.set(breaker.trips)
            rejected.set(breaker.rejected)
            await asyncio.sleep(interval_s)
    finally:
        server.shutdown()
        thread.join(timeout=5)
