"""The Starlette application: the route table and the batch ticker."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

from openai_sim import admin, batch_routes, config, file_routes, routes, state
from openai_sim.endpoint import Reply, endpoint
from openai_sim.errors import route_not_found
from openai_sim.stats import Call

log = logging.getLogger("openai_sim")
TICK_S = 0.2
ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


async def _unknown(request: Request, sim: state.Sim, call: Call) -> Reply:
    raise route_not_found(request.method, request.url.path)


async def _ticker(app: Starlette) -> None:
    while True:
        await asyncio.sleep(TICK_S)
        try:
            await batch_routes.refresh_all(app.state.sim)
        except Exception:
            log.exception("batch refresh failed")


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    task = asyncio.create_task(_ticker(app))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def create_app(patch: dict[str, Any] | None = None) -> Starlette:
    v1 = [
        Route("/v1/responses", endpoint("responses", routes.create_response), methods=["POST"]),
        Route("/v1/models", endpoint("models.list", routes.list_models), methods=["GET"]),
        Route("/v1/models/{model:path}", endpoint("models.get", routes.get_model), methods=["GET"]),
        Route("/v1/files", endpoint("files.create", file_routes.create_file), methods=["POST"]),
        Route("/v1/files/{file_id}", endpoint("files.get", file_routes.get_file), methods=["GET"]),
        Route(
            "/v1/files/{file_id}",
            endpoint("files.delete", file_routes.delete_file),
            methods=["DELETE"],
        ),
        Route(
            "/v1/files/{file_id}/content",
            endpoint("files.content", file_routes.file_content),
            methods=["GET"],
        ),
        Route(
            "/v1/batches", endpoint("batches.create", batch_routes.create_batch), methods=["POST"]
        ),
        Route("/v1/batches", endpoint("batches.list", batch_routes.list_batches), methods=["GET"]),
        Route(
            "/v1/batches/{batch_id}",
            endpoint("batches.get", batch_routes.get_batch),
            methods=["GET"],
        ),
        Route(
            "/v1/batches/{batch_id}/cancel",
            endpoint("batches.cancel", batch_routes.cancel_batch),
            methods=["POST"],
        ),
    ]
    sim_routes = [
        Route("/_sim/health", admin.health, methods=["GET"]),
        Route("/_sim/stats", admin.stats, methods=["GET"]),
        Route("/_sim/calls", admin.calls, methods=["GET"]),
        Route("/_sim/reset", admin.reset, methods=["POST"]),
        Route("/_sim/config", admin.get_config, methods=["GET"]),
        Route("/_sim/config", admin.set_config, methods=["POST"]),
        Route("/_sim/clock", admin.clock, methods=["POST"]),
    ]
    fallback = Route("/{path:path}", endpoint("unknown", _unknown), methods=ALL_METHODS)
    app = Starlette(routes=[*v1, *sim_routes, fallback], lifespan=_lifespan)
    app.state.start_config = copy.deepcopy(patch or {})
    app.state.sim = state.build(config.build(patch))
    return app
