"""Prometheus metrics: one registry per app, a pure ASGI middleware, and ``/metrics``.

With several uvicorn workers each process serves its own numbers (no multiprocess directory);
scrape each worker or run one worker per container.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "status_http_requests",
            "HTTP requests answered",
            ["method", "route", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "status_http_request_seconds",
            "Time to answer an HTTP request",
            ["route"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.cancels = Counter(
            "status_cancel_events", "JobCancelRequested events published", registry=self.registry
        )

    async def endpoint(self, request: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class MetricsMiddleware:
    """Counts and times every HTTP request by route template (``unmatched`` for 404s)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        code = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route: Any = scope.get("route")
            name = getattr(route, "path", "unmatched")
            self.metrics.requests.labels(scope["method"], name, str(code)).inc()
            self.metrics.latency.labels(name).observe(time.perf_counter() - start)
