"""Prometheus families of an OpenAI-facing stage's live circuit breaker, read at scrape time.

``gen_breaker_state{stage}`` (0 closed, 1 half-open, 2 open), ``gen_breaker_trips_total{stage}``
and ``gen_breaker_rejected_total{stage}``; used by vision and translate on their ``/metrics``.
"""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from gen_common.breaker import Breaker, State
from gen_common.metrics import Metrics

STATES = {State.CLOSED: 0, State.HALF_OPEN: 1, State.OPEN: 2}


def families(breaker: Breaker, *, stage: str) -> list[Metric]:
    state = GaugeMetricFamily(
        "gen_breaker_state", "0 closed, 1 half-open, 2 open", labels=["stage"]
    )
    state.add_metric([stage], STATES[breaker.state])
    trips = CounterMetricFamily("gen_breaker_trips", "Times the breaker opened", labels=["stage"])
    trips.add_metric([stage], breaker.trips)
    rejected = CounterMetricFamily(
        "gen_breaker_rejected", "Calls refused by the breaker", labels=["stage"]
    )
    rejected.add_metric([stage], breaker.rejected)
    return [state, trips, rejected]


def register(metrics: Metrics, breaker: Breaker, *, stage: str) -> None:
    async def source() -> list[Metric]:
        return families(breaker, stage=stage)

    metrics.add_source("breaker", source)
