"""Prometheus metrics of one status app (own registry; see gen_common.metrics).

``status_http_requests_total{method,route,code}``, ``status_http_request_seconds{route}`` and
``status_cancel_events_total``. With several uvicorn workers each process serves its own numbers
(no multiprocess directory); scrape each worker or run one worker per container.
"""

from __future__ import annotations

from gen_common import metrics
from prometheus_client import Counter
from starlette.types import ASGIApp


class Metrics(metrics.Metrics):
    def __init__(self) -> None:
        super().__init__()
        self.http = metrics.HttpMetrics(self.registry, "status")
        self.cancels = Counter(
            "status_cancel_events", "JobCancelRequested events published", registry=self.registry
        )


class MetricsMiddleware(metrics.HttpMiddleware):
    """Counts and times every request by route template (``unmatched`` for 404s)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        super().__init__(app, http=metrics.http)
