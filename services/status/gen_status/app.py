"""create_app(settings): the FastAPI app, its lifespan (pool + publisher), JSON errors."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from gen_common import db, kafka
from gen_common.request_auth import AuthError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from gen_status import models, openapi, results, routes, routes_v2, store
from gen_status.auth import HeaderVerifier
from gen_status.deps import BodyTooLarge, Deps, DepsDep
from gen_status.fastpath import BatchStatusFastPath
from gen_status.metrics import Metrics, MetricsMiddleware
from gen_status.settings import StatusSettings
from gen_status.wire import JSONBody, error

log = logging.getLogger(__name__)
SERVICE = "generation-service"
HEALTH_TIMEOUT_S = 2.0
UNAVAILABLE = db.DB_TROUBLE


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONBody({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)


async def _unauthorized(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AuthError)
    log.info("v2 auth failed", extra={"reason": exc.reason, "path": request.url.path})
    return error(401, "unauthorized")


async def _invalid_request(request: Request, exc: Exception) -> Response:
    return error(400, "Invalid request parameters")


async def _too_large(request: Request, exc: Exception) -> Response:
    return error(413, "Request body too large")


async def _unavailable(request: Request, exc: Exception) -> Response:
    log.warning("dependency unavailable", extra={"error": repr(exc), "path": request.url.path})
    if request.url.path.endswith("/cancel"):
        return error(503, "Failed to cancel job")
    return error(503, "Service unavailable")


async def _crashed(request: Request, exc: Exception) -> Response:
    # Starlette logs the exception; the client never sees its text.
    if request.url.path.endswith("/cancel"):
        return error(500, "Failed to cancel job")
    return error(500, "Internal server error")


def create_app(settings: StatusSettings) -> FastAPI:
    options = settings.status
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            pool = await stack.enter_async_context(db.open_pool(settings.db))
            publisher = await stack.enter_async_context(kafka.open_publisher(settings.kafka))
            app.state.deps = Deps(
                pool=pool,
                publisher=publisher,
                verifier=HeaderVerifier.build(
                    options.shared_key.get_secret_value().encode(),
                    legacy_forms=options.legacy_header_signatures,
                ),
                options=options,
                metrics=metrics,
            )
            yield

    app = FastAPI(
        title="Generation Service: status",
        version="1.0.0",
        description="Read-only job and lot status over PostgreSQL (API v1 contract).",
        lifespan=lifespan,
        default_response_class=JSONBody,
        # Prometheus covers this service; FastAPI's per-request OpenTelemetry probe (it reads the
        # environment on every request) costs ~15 us of a ~250 us poll.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.router.redirect_slashes = False  # like the original: "/health/" is a 404, not a 307
    app.include_router(routes.router)
    app.include_router(results.router)
    app.include_router(routes_v2.router)
    app.add_exception_handler(AuthError, _unauthorized)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(BodyTooLarge, _too_large)
    for exc_type in UNAVAILABLE:
        app.add_exception_handler(exc_type, _unavailable)
    app.add_exception_handler(Exception, _crashed)
    app.add_middleware(BatchStatusFastPath, state=app.state, unavailable=UNAVAILABLE)
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    @app.get("/health", response_model=models.Health, responses=models.errors(503), tags=["ops"])
    async def health(deps: DepsDep) -> Response:
        """The original's shape plus a database check (503 when PostgreSQL does not answer)."""
        try:
            async with asyncio.timeout(HEALTH_TIMEOUT_S):
                await store.ping(deps.pool)
        except UNAVAILABLE:
            return error(503, "database unavailable", service=SERVICE, status="unhealthy")
        return JSONBody({"database": "ok", "service": SERVICE, "status": "healthy"})

    app.add_api_route("/metrics", metrics.endpoint, methods=["GET"], include_in_schema=False)
    app.openapi = lambda: openapi.build(app)  # type: ignore[method-assign]
    return app
