"""Prometheus metrics of one notifier process (own registry; nothing built at import time)."""

from __future__ import annotations

from gen_common.db import Conn
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

SHOWN = {"queued": "pending", "running": "sending"}


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
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
        self.queue = Gauge(
            "notifier_queue_depth", "Deliveries by status", ["status"], registry=self.registry
        )

    def attempt(self, result: str, status: str) -> None:
        self.attempts.labels(result=result).inc()
        self.deliveries.labels(outcome="retry" if status == "queued" else status).inc()

    async def refresh_queue(self, conn: Conn) -> None:
        rows = await conn.fetch(
            """SELECT status, count(*) AS n FROM webhook_deliveries
               WHERE status IN ('queued', 'running') GROUP BY status"""
        )
        counts = {r["status"]: r["n"] for r in rows}
        for status in ("queued", "running"):
            self.queue.labels(status=SHOWN[status]).set(counts.get(status, 0))

    def render(self) -> bytes:
        return generate_latest(self.registry)
