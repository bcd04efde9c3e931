"""Prometheus metrics of one ingest app (own registry, so several apps can share a process).

``ingest_http_requests_total{method,route,code}``, ``ingest_http_request_seconds{route}`` and
``ingest_auth_failures_total{reason}``. The middleware also binds each request's trace context
(its ``traceparent`` header, or a new trace): every lot the request publishes carries it.
"""

from __future__ import annotations

from gen_common import metrics
from prometheus_client import Counter
from starlette.types import ASGIApp


class Metrics(metrics.Metrics):
    def __init__(self) -> None:
        super().__init__()
        self.http = metrics.HttpMetrics(self.registry, "ingest")
        self.auth_failures = Counter(
            "ingest_auth_failures", "v2 auth failures", ["reason"], registry=self.registry
        )


class MetricsMiddleware(metrics.HttpMiddleware):
    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        super().__init__(app, http=metrics.http, start_traces=True)
