"""Prometheus ``/metrics`` for every service, one registry per app or process.

- :class:`Metrics` — the registry plus *scrape-time* sources: async functions run on every scrape
  that return metric families (work-queue depths read from PostgreSQL, consumer lag read from
  Kafka, breaker state). Nothing is added to the services' hot paths for these; a source that
  fails is left out of that scrape and counted in ``gen_metrics_source_errors_total``.
- :class:`HttpMetrics` and :class:`HttpMiddleware` — request counts and durations by route
  template (``unmatched`` for 404s), the one ASGI middleware of ingest, status and notifier. It
  also binds the request's W3C trace context (its valid ``traceparent`` header; at ingest, else a
  new trace), so what a request publishes and logs carries it.
- :func:`serve` — a ``/metrics``-only HTTP server for the services without an HTTP app.
- :func:`consumer_lag` — the ``gen_consumer_*`` families of a :class:`~gen_common.kafka.LagProbe`;
  :func:`by_label` and :func:`cached` help services turn their own SQL into families
  (:mod:`gen_common.stage_metrics` has the families vision and translate share).

With several uvicorn workers each process serves its own numbers (no multiprocess directory).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from typing import Any

import asyncpg
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gen_common import http_server, tracing
from gen_common.errors import RetryableError
from gen_common.kafka import LagProbe

log = logging.getLogger(__name__)
Source = Callable[[], Awaitable[Iterable[Metric]]]
SOURCE_TIMEOUT_S = 5.0
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# What a scrape-time source may fail with; it is then left out of that scrape.
SOURCE_TROUBLE = (
    RetryableError,
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)


class _Latest(Collector):
    """The families a source returned on the latest scrape."""

    def __init__(self) -> None:
        self.families: list[Metric] = []

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._sources: list[tuple[str, Source, _Latest]] = []
        self.source_errors = Counter(
            "gen_metrics_source_errors",
            "Scrape-time sources that failed (their families are missing from that scrape)",
            ["source"],
            registry=self.registry,
        )

    def add_source(self, name: str, source: Source) -> None:
        """Run ``source`` on every scrape; its families replace the ones of the last scrape."""
        latest = _Latest()
        self.registry.register(latest)
        self._sources.append((name, source, latest))

    async def _refresh(self, name: str, source: Source, latest: _Latest) -> None:
        try:
            latest.families = list(await asyncio.wait_for(source(), SOURCE_TIMEOUT_S))
        except SOURCE_TROUBLE as exc:
            latest.families = []
            self.source_errors.labels(name).inc()
            log.warning("metrics source failed", extra={"source": name, "error": repr(exc)})

    async def render(self) -> bytes:
        await asyncio.gather(*(self._refresh(*s) for s in self._sources))
        return generate_latest(self.registry)

    async def endpoint(self, request: Request) -> Response:
        return Response(await self.render(), media_type=CONTENT_TYPE_LATEST)


class HttpMetrics:
    """``<service>_http_requests_total{method,route,code}``, ``<service>_http_request_seconds``."""

    def __init__(self, registry: CollectorRegistry, service: str) -> None:
        self.requests = Counter(
            f"{service}_http_requests",
            "HTTP requests answered",
            ["method", "route", "code"],
            registry=registry,
        )
        self.latency = Histogram(
            f"{service}_http_request_seconds",
            "Time to answer an HTTP request",
            ["route"],
            buckets=HTTP_BUCKETS,
            registry=registry,
        )


class HttpMiddleware:
    """Counts and times every request by route template; binds the request's trace context
    (with ``start_traces``, a new trace when the request brings none: ingest, where traces
    start; elsewhere records published without one start their own)."""

    def __init__(self, app: ASGIApp, *, http: HttpMetrics, start_traces: bool = False) -> None:
        self.app = app
        self.http = http
        self.start_traces = start_traces

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        traceparent = _traceparent(scope)
        if traceparent is None and self.start_traces:
            traceparent = tracing.new()
        tracing.bind(traceparent)
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
            self.http.requests.labels(scope["method"], name, str(code)).inc()
            self.http.latency.labels(name).observe(time.perf_counter() - start)


def _traceparent(scope: Scope) -> str | None:
    for name, value in scope.get("headers") or ():
        if name == b"traceparent":
            text = value.decode("latin-1").strip()
            return text if tracing.valid(text) else None
    return None


def consumer_lag(probe: LagProbe) -> Source:
    """Families ``gen_consumer_lag`` (end - committed), ``gen_consumer_committed_offset`` and
    ``gen_consumer_end_offset``, per group, topic (base name) and partition."""

    async def source() -> list[Metric]:
        labels = ["group", "topic", "partition"]
        lag = GaugeMetricFamily(
            "gen_consumer_lag", "End offset minus committed offset", labels=labels
        )
        committed = GaugeMetricFamily(
            "gen_consumer_committed_offset", "Committed offset (-1: none)", labels=labels
        )
        end = GaugeMetricFamily("gen_consumer_end_offset", "Log end offset", labels=labels)
        for p in await probe.read():
            values = [probe.group, p.topic, str(p.partition)]
            lag.add_metric(values, p.lag)
            committed.add_metric(values, -1 if p.committed is None else p.committed)
            end.add_metric(values, p.end)
        return [lag, committed, end]

    return source


def by_label(
    family: GaugeMetricFamily | CounterMetricFamily,
    rows: Iterable[Any],
    *,
    key: str,
    value: str = "n",
    expected: Sequence[str] = (),
    fixed: Sequence[str] = (),
) -> GaugeMetricFamily | CounterMetricFamily:
    """Fill ``family`` from database rows: label values ``fixed`` then the row's ``key`` column,
    value column ``value``; the ``expected`` key values are shown as 0 when no row has them."""
    seen = dict.fromkeys(expected, 0.0)
    for row in rows:
        seen[str(row[key])] = float(row[value] or 0)
    for label, n in seen.items():
        family.add_metric([*fixed, label], n)
    return family


def cached(source: Source, *, every_s: float) -> Source:
    """``source`` run at most once every ``every_s`` (for aggregates over growing tables)."""
    latest: list[Metric] = []
    at = float("-inf")

    async def wrapped() -> list[Metric]:
        nonlocal latest, at
        if time.monotonic() - at >= every_s:
            latest = list(await source())
            at = time.monotonic()
        return latest

    return wrapped


async def serve(metrics: Metrics, *, host: str, port: int) -> None:
    """Serve ``GET /metrics`` (JSON 404 elsewhere) until cancelled."""

    async def not_found(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": "Not found"}, status_code=404)

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": "Method not allowed"}, status_code=405)

    app = Starlette(
        routes=[Route("/metrics", metrics.endpoint, methods=["GET"])],
        exception_handlers={404: not_found, 405: not_allowed},
    )
    await http_server.serve(app, host=host, port=port, lifespan="off")
