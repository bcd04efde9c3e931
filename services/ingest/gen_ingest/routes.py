"""API v1 routes: generate-descriptions (sync and batch), test-image-validation, health."""

from __future__ import annotations

import math
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from gen_ingest import docs, idempotency, store, sync
from gen_ingest.limits import read_body
from gen_ingest.submit import Deps, create_job, mode_for
from gen_ingest.validate import Rejected, check_v1, is_json, parse_json
from gen_ingest.wire import V1JSON, error

V1_CLIENT = "v1"
router = APIRouter()


async def get_deps(request: Request) -> Deps:
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
async def generate_descriptions(request: Request, deps: DepsDep) -> Response:
    started = time.perf_counter()
    opts = deps.options
    if not is_json(request.headers.get("content-type")):
        return error(400, "Content-Type must be application/json")
    async with deps.pool.acquire() as conn:
        wait = await store.acquire_rate(
            conn, "v1", rate_per_s=opts.v1_rate_per_s, burst=opts.v1_rate_burst
        )
    if wait:
        return too_many(wait)
    body = await read_body(request)
    identity = idempotency.key_of(
        request.headers.get("idempotency-key"), body, dedupe=opts.duplicate_window_s > 0
    )
    data = parse_json(body)
    del body  # one copy at a time: the bytes go before the lots are checked
    req = check_v1(data, deps.v1_key, opts)
    del data

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
