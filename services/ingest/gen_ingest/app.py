"""create_app(settings): the FastAPI app, its lifespan (pool, publisher, reply tail), errors."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import asyncpg
import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from gen_common import db, kafka
from gen_common.image_check import ImageChecker
from gen_common.request_auth import AuthError
from gen_common.safe_http import SafeClient
from starlette.exceptions import HTTPException
from starlette.responses import Response

from gen_ingest import openapi, probe, replies, routes, store, v2
from gen_ingest.limits import BodyLimit
from gen_ingest.metrics import Metrics, MetricsMiddleware
from gen_ingest.request_body import Rejected
from gen_ingest.settings import IngestSettings
from gen_ingest.submit import Deps, PublishFailed
from gen_ingest.wire import V1JSON, error

log = logging.getLogger(__name__)
TAIL_START_S = 30.0
UNAVAILABLE = db.DB_TROUBLE
MESSAGES = {404: "Not found", 405: "Method not allowed"}


async def _rejected(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Rejected)
    return V1JSON(exc.body, status_code=exc.status)


async def _unauthorized(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AuthError)
    request.app.state.metrics.auth_failures.labels(exc.reason.split()[0]).inc()
    log.info("v2 auth failed", extra={"reason": exc.reason, "path": request.url.path})
    return error(401, "unauthorized")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = MESSAGES.get(exc.status_code, str(exc.detail))
    return error(exc.status_code, message, headers=exc.headers)


async def _invalid(request: Request, exc: Exception) -> Response:
    return error(400, "Invalid request")


async def _bad_data(request: Request, exc: Exception) -> Response:
    # A value PostgreSQL cannot store that validation let through (a safety net, never a 500).
    log.warning("database refused a value", extra={"error": repr(exc), "path": request.url.path})
    return error(400, "Invalid characters in request")


async def _unavailable(request: Request, exc: Exception) -> Response:
    log.warning("dependency unavailable", extra={"error": repr(exc), "path": request.url.path})
    return error(503, "Service unavailable, no job was created", headers={"Retry-After": "5"})


async def _crashed(request: Request, exc: Exception) -> Response:
    log.error("request failed", exc_info=exc, extra={"path": request.url.path})
    return error(500, "Internal server error")


async def _purge(deps: Deps, interval_s: float, nonce_age_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        try:
            async with deps.pool.acquire() as conn:
                await store.purge(conn, nonce_age_s=nonce_age_s)
        except UNAVAILABLE as exc:
            log.warning("purge failed", extra={"error": repr(exc)})


def create_app(settings: IngestSettings) -> FastAPI:
    opts = settings.ingest
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            await kafka.ensure_topics(settings.kafka)
            # Ingest keeps no session state (no SET, LISTEN, advisory locks): no reset round trip.
            pool = await stack.enter_async_context(db.open_pool(settings.db))
            publisher = await stack.enter_async_context(kafka.open_publisher(settings.kafka))
            keep = opts.images.concurrency
            image_client = await stack.enter_async_context(
                SafeClient(
                    opts.images.ssrf,
                    timeout=opts.images.get_timeout_s,
                    limits=httpx.Limits(max_connections=keep, max_keepalive_connections=keep),
                )
            )
            waiting = replies.Replies()
            deps = Deps(
                pool=pool,
                publisher=publisher,
                replies=waiting,
                options=opts,
                v1_key=opts.shared_key.get_secret_value().encode(),
                images=ImageChecker(image_client, opts.images),
            )
            started = asyncio.Event()
            tail = asyncio.create_task(
                kafka.tail(
                    settings.kafka,
                    topics=replies.TOPICS,
                    models=replies.MODELS,
                    callback=waiting.deliver,
                    started=started,
                ),
                name="ingest-replies",
            )
            purge = asyncio.create_task(
                _purge(deps, opts.purge_interval_s, 2.0 * opts.clock_skew_s), name="ingest-purge"
            )
            stack.push_async_callback(_stop, tail, purge)
            await asyncio.wait_for(started.wait(), TAIL_START_S)
            app.state.deps = deps
            yield

    app = FastAPI(
        title="Generation Service — ingest",
        version="1.0.0",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.metrics = metrics
    app.include_router(routes.router)
    app.include_router(probe.router)
    app.include_router(v2.router)

    @app.get("/metrics", include_in_schema=False)
    async def metrics_route() -> Response:
        return Response(await metrics.render(), media_type="text/plain; version=0.0.4")

    app.add_exception_handler(Rejected, _rejected)
    app.add_exception_handler(AuthError, _unauthorized)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(PublishFailed, _unavailable)
    app.add_exception_handler(asyncpg.DataError, _bad_data)
    for exc_type in UNAVAILABLE:
        app.add_exception_handler(exc_type, _unavailable)
    app.add_exception_handler(Exception, _crashed)
    app.add_middleware(BodyLimit, limit=opts.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.openapi = lambda: openapi.build(app)  # type: ignore[method-assign]
    return app


async def _stop(*tasks: asyncio.Task[None]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
