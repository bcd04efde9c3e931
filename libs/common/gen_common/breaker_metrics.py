"""Optional Prometheus ``/metrics`` of an OpenAI-facing stage: its live breaker's state and counts.

Used by vision and translate (``<STAGE>__METRICS_PORT``); gauges are named ``<stage>_breaker_*``.
"""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, Gauge, start_http_server

from gen_common.breaker import Breaker, State

_STATES = {State.CLOSED: 0, State.HALF_OPEN: 1, State.OPEN: 2}


async def serve(
    port: int,
    breaker: Breaker,
    *,
    stage: str,
    host: str = "127.0.0.1",
    interval_s: float = 5.0,
) -> None:
    registry = CollectorRegistry()  # per run(): no clash when a process runs it twice (tests)
    state = Gauge(f"{stage}_breaker_state", "0 closed, 1 half-open, 2 open", registry=registry)
    trips = Gauge(f"{stage}_breaker_trips", "times the breaker opened", registry=registry)
    rejected = Gauge(f"{stage}_breaker_rejected", "calls refused by the breaker", registry=registry)
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
