"""The notifier's Prometheus metrics (own registry; nothing built at import time).

Counted as they happen: ``notifier_attempts_total{result}`` and delivery outcomes
``notifier_deliveries_total{outcome}``; HTTP requests as ``notifier_http_*``. Read at scrape
time once :meth:`Metrics.watch` is given the pool: ``gen_queue_depth{queue="webhook_deliveries",
state}`` (pending, sending) and endpoint breakers ``notifier_endpoints{breaker}`` (open, closed)
with ``notifier_endpoint_breaker_trips_total``; the process adds ``gen_consumer_lag``.
"""

from __future__ import annotations

from functools import partial

import asyncpg
from gen_common import metrics
from prometheus_client import Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

SHOWN = {"queued": "pending", "running": "sending"}


class Metrics(metrics.Metrics):
    def __init__(self) -> None:
        super().__init__()
        self.http = metrics.HttpMetrics(self.registry, "notifier")
        self.attempts = Counter(
            "notifier_attempts_total",
            "Delivery attempts by result (success or error class)",
            ["result"],
            registry=self.registry,
        )
        self.deliveries = Counter(
            "notifier_deliveries_total",
            "Deliveries that reached an outcome (delivered, exhausted, failed, disabled, retry)",
            ["outcome"],
            registry=self.registry,
        )

    def attempt(self, result: str, status: str) -> None:
        self.attempts.labels(result=result).inc()
        self.deliveries.labels(outcome="retry" if status == "queued" else status).inc()

    def watch(self, pool: asyncpg.Pool) -> None:
        """Read the delivery queue and the endpoint breakers from ``pool`` on every scrape."""
        self.add_source("queue", partial(queue_depth, pool))
        self.add_source("endpoints", partial(endpoint_breakers, pool))


async def queue_depth(pool: asyncpg.Pool) -> list[Metric]:
    rows = await pool.fetch(
        """SELECT status, count(*) AS n FROM webhook_deliveries
           WHERE status IN ('queued', 'running') GROUP BY status"""
    )
    shown = [{"state": SHOWN[r["status"]], "n": r["n"]} for r in rows]
    family = GaugeMetricFamily("gen_queue_depth", "Work rows by state", labels=["queue", "state"])
    metrics.by_label(
        family, shown, key="state", expected=tuple(SHOWN.values()), fixed=["webhook_deliveries"]
    )
    return [family]


async def endpoint_breakers(pool: asyncpg.Pool) -> list[Metric]:
    row = await pool.fetchrow(
        """SELECT count(*) FILTER (WHERE breaker_open_until > now()) AS open,
                  count(*) FILTER (WHERE breaker_open_until IS NULL
                                      OR breaker_open_until <= now()) AS closed,
                  coalesce(sum(breaker_trips), 0) AS trips
           FROM webhook_endpoints"""
    )
    assert row is not None
    endpoints = GaugeMetricFamily(
        "notifier_endpoints", "Webhook endpoints by breaker state", labels=["breaker"]
    )
    endpoints.add_metric(["open"], row["open"])
    endpoints.add_metric(["closed"], row["closed"])
    trips = CounterMetricFamily(
        "notifier_endpoint_breaker_trips", "Times endpoint breakers opened (all endpoints)"
    )
    trips.add_metric([], row["trips"])
    return [endpoints, trips]
