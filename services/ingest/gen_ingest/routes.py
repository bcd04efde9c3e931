"""API v1 routes: generate-descriptions (sync and batch), test-image-validation, health."""

from __future__ import annotations

import contextlib
import math
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi import Request as HttpRequest
from starlette.responses import Response

from gen_ingest import admission, docs, idempotency, stream, sync
from gen_ingest.request_body import Rejected, is_json
from gen_ingest.submit import Deps, create_job, mode_for
from gen_ingest.validate import Request
from gen_ingest.wire import V1JSON, error

V1_CLIENT = "v1"
router = APIRouter()


async def get_deps(request: HttpRequest) -> Deps:
    # async: FastAPI runs a plain-def dependency in a worker thread on every request
    deps: Deps = request.app.state.deps
    return deps


DepsDep = Annotated[Deps, Depends(get_deps)]


def too_many(wait_s: float) -> Response:
    return error(
        429, "Rate limit exceeded", headers={"Retry-After": str(max(1, math.ceil(wait_s)))}
    )


@router.get("/health", responses=docs.HEALTH)
async def health() -> Response:
    return V1JSON({"service": "generation-service", "status": "healthy"})


@router.post(
    "/api/v1/generate-descriptions",
    responses=docs.GENERATE_RESPONSES,
    openapi_extra=docs.body("GenerateRequest"),
    summary="Describe one lot inline (sync) or accept a job of 2+ lots (batch)",
)
async def generate_descriptions(request: HttpRequest, deps: DepsDep) -> Response:
    started = time.perf_counter()
    opts = deps.options
    if not is_json(request.headers.get("content-type")):
        return error(400, "Content-Type must be application/json")
    async with deps.pool.acquire() as conn:
        wait = await admission.acquire_rate(
            conn, "v1", rate_per_s=opts.v1_rate_per_s, burst=opts.v1_rate_burst
        )
    if wait:
        return too_many(wait)
    with contextlib.ExitStack() as files:  # the spooled body and lots of a large request
        body = await stream.receive(request, files)
        identity = idempotency.key_of_digest(
            request.headers.get("idempotency-key"),
            body.digest,
            dedupe=opts.duplicate_window_s > 0,
        )
        req = await stream.check(body, deps.v1_key, opts, files)
        del body
        return await _answer(deps, req, identity, started)


async def _answer(
    deps: Deps, req: Request, identity: tuple[str, bytes] | None, started: float
) -> Response:
    opts = deps.options

    async def produce() -> Response:
        if len(req.lots) == 1:
            status, answer = await sync.process(deps, req, client_id=V1_CLIENT)
            return V1JSON(answer, status_code=status)
        created = await create_job(
            deps, req, mode=mode_for(len(req.lots), opts), client_id=V1_CLIENT, api_version=1
        )
        accepted: dict[str, Any] = {
            "creation_time": f"{time.perf_counter() - started:.2f}s",
            "job_id": str(created.job_id),
            "lots_count": len(req.lots),
            "status": "accepted",
        }
        return V1JSON(accepted, status_code=201)

    if identity is None:
        return await produce()
    key, digest = identity
    ttl = opts.idempotency_ttl_s if key.startswith("key:") else opts.duplicate_window_s
    return await idempotency.once(
        deps.pool, client_id=V1_CLIENT, key=key, request_hash=digest, ttl_s=ttl, produce=produce
    )


__all__ = ["Rejected", "router"]
