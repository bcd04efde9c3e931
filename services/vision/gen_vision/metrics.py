"""Optional Prometheus ``/metrics``: breaker state and counters, scraped from the live breaker."""

from __future__ import annotations

import asyncio

from gen_common.breaker import Breaker, State
from prometheus_client import CollectorRegistry, Gauge, start_http_server

_STATES = {State.CLOSED: 0, State.HALF_OPEN: 1, State.OPEN: 2}


async def serve(
    port: int, breaker: Breaker, *, host: str = "127.0.0.1", interval_s: float = 5.0
) -> None:
    registry = CollectorRegistry()  # per run(): no clash when a process runs it twice (tests)
    state = Gauge("vision_breaker_state", "0 closed, 1 half-open, 2 open", registry=registry)
    trips = Gauge("vision_breaker_trips", "times the breaker opened", registry=registry)
    rejected = Gauge("vision_breaker_rejected", "calls refused by the breaker", registry=registry)
    server, thread = start_http_server(port, addr=host, registry=registry)
    try:
        while True:
            state.set(_STATES[breaker.state])
            trips.set(breaker.trips)
            rejected.set(breaker.rejected)
            await asyncio.sleep(interval_s)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
