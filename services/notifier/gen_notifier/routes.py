"""HTTP: the webhook monitoring routes (contract §1.10), replay, /health and /metrics.

``create_app(settings, pool=..., metrics=..., clock=...)``: the notifier process passes its own
pool; without one the lifespan opens a pool. Every error is JSON ``{"error": ...}``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from gen_common import db
from gen_common.metrics import HttpMiddleware
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException

from gen_notifier import deliveries, monitor
from gen_notifier.metrics import Metrics
from gen_notifier.schedule import Clock, SystemClock
from gen_notifier.settings import NotifierSettings


@dataclass
class State:
    pool: asyncpg.Pool | None
    metrics: Metrics
    clock: Clock


def _int(value: str | None, default: int, low: int, high: int) -> int:
    try:
        return min(high, max(low, int(value))) if value is not None else default
    except ValueError:
        return default


def _fail(message: str, status: int = 500) -> JSONResponse:
    return JSONResponse({"success": False, "error": message}, status_code=status)


def create_app(
    settings: NotifierSettings,
    *,
    pool: asyncpg.Pool | None = None,
    metrics: Metrics | None = None,
    clock: Clock | None = None,
) -> FastAPI:
    state = State(pool, metrics or Metrics(), clock or SystemClock())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if state.pool is not None:
            yield
            return
        async with db.open_pool(settings.db) as opened:
            state.pool = opened
            try:
                yield
            finally:
                state.pool = None

    app = FastAPI(title="Generation Service notifier", lifespan=lifespan)

    def conn() -> Any:
        assert state.pool is not None
        return state.pool.acquire()

    @app.exception_handler(HTTPException)
    async def _http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": "Invalid request"}, status_code=400)

    @app.exception_handler(Exception)
    async def _crash(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": "Internal error"}, status_code=500)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"service": "notifier", "status": "healthy"}

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(await state.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/v1/webhook-metrics")
    async def webhook_metrics(hours: str | None = None) -> Any:
        try:
            async with conn() as c:
                data = await monitor.metrics(c, _int(hours, 24, 1, 24 * 90))
        except (asyncpg.PostgresError, OSError):
            return _fail("Failed to get webhook metrics")
        return {"success": True, "metrics": data}

    @app.get("/api/v1/webhook-health")
    async def webhook_health() -> Any:
        try:
            async with conn() as c:
                data = await monitor.report(c)
        except (asyncpg.PostgresError, OSError):
            return _fail("Failed to get webhook health report")
        return {"success": True, "report": data}

    @app.get("/api/v1/webhook-failures")
    async def webhook_failures(limit: str | None = None) -> Any:
        try:
            async with conn() as c:
                data = await monitor.failures(c, _int(limit, 10, 1, 1000))
        except (asyncpg.PostgresError, OSError):
            return _fail("Failed to get webhook failures")
        return {"success": True, "failed_webhooks": data}

    @app.get("/api/v1/webhook-endpoints")
    async def webhook_endpoints() -> Any:
        try:
            async with conn() as c:
                data = await monitor.endpoints(c)
        except (asyncpg.PostgresError, OSError):
            return _fail("Failed to get webhook endpoints")
        return {"success": True, "endpoints": data}

    @app.get("/api/v1/webhook-alerts")
    async def webhook_alerts() -> Any:
        try:
            async with conn() as c:
                found = await monitor.alerts(
                    c, await monitor.metrics(c, 1), await monitor.endpoints(c)
                )
        except (asyncpg.PostgresError, OSError):
            return _fail("Failed to get webhook alerts")
        return {"success": True, "alerts": found, "alert_count": len(found)}

    @app.post("/api/v1/webhook-deliveries/replay")
    async def replay_since(since: str | None = None) -> Any:
        try:
            when = datetime.fromisoformat(since or "")
        except ValueError:
            return JSONResponse({"error": "since must be an RFC 3339 time"}, status_code=400)
        if when.tzinfo is None:
            return JSONResponse({"error": "since needs a time zone (e.g. Z)"}, status_code=400)
        async with conn() as c, c.transaction():
            ids = await deliveries.replay_since(c, when, state.clock.now())
            await c.execute("NOTIFY gen_notifier_work")
        return JSONResponse({"success": True, "replayed": ids, "count": len(ids)}, status_code=202)

    @app.post("/api/v1/webhook-deliveries/{msg_id}/replay")
    async def replay_one(msg_id: str) -> Any:
        async with conn() as c, c.transaction():
            result = await deliveries.replay_one(c, msg_id, state.clock.now())
            await c.execute("NOTIFY gen_notifier_work")
        if result == "missing":
            return JSONResponse({"error": "Delivery not found"}, status_code=404)
        if result != "replayed":
            shown = {"queued": "pending", "running": "sending"}.get(result, result)
            return JSONResponse(
                {"error": f"Delivery is {shown}; only failed, exhausted or disabled ones replay"},
                status_code=409,
            )
        return JSONResponse({"success": True, "replayed": [msg_id], "count": 1}, status_code=202)

    app.add_middleware(HttpMiddleware, http=state.metrics.http)
    return app
