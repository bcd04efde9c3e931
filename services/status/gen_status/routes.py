"""v1 read routes and cancel (contract §1.2, §1.4, §1.6, §1.7, §1.8)."""

from __future__ import annotations

import asyncio
from typing import Annotated

import asyncpg
from fastapi import APIRouter, Header, Request
from gen_common.events import JobCancelRequested
from starlette.responses import Response

from gen_status import models, store, stream, views
from gen_status.deps import DepsDep, signed
from gen_status.wire import dumps, error, json_response

router = APIRouter(prefix="/api/v1", tags=["v1"])
Signature = Annotated[
    str | None,
    Header(alias="X-Signature", description="hex HMAC-SHA256 (see contract Decision 2)"),
]
CANCEL_MESSAGE = "Job cancelled by user request"
MAX_OFFSET = 2**62


def not_found() -> Response:
    return error(404, "Job not found")


def invalid_signature() -> Response:
    return error(401, "Invalid signature")


async def _open_route_refused(request: Request, deps: DepsDep, job_id: str) -> bool:
    return deps.options.sign_open_routes and not await signed(request, deps, job_id)


@router.get(
    "/batch-status/{job_id}",
    response_model=models.BatchStatus,
    responses=models.errors(401, 404),
)
async def batch_status(
    job_id: str, request: Request, deps: DepsDep, x_signature: Signature = None
) -> Response:
    """Job state and progress; no side effects (one primary-key lookup)."""
    if deps.options.sign_open_routes and await _open_route_refused(request, deps, job_id):
        return invalid_signature()
    job = await store.get_job(deps.pool, job_id)
    if job is None:
        return not_found()
    return json_response(views.batch_status(job, job_id))


@router.get(
    "/jobs/{job_id}/status", response_model=models.JobStatus, responses=models.errors(401, 404)
)
async def job_status(
    job_id: str, request: Request, deps: DepsDep, x_signature: Signature = None
) -> Response:
    if deps.options.sign_open_routes and await _open_route_refused(request, deps, job_id):
        return invalid_signature()
    job = await store.get_job(deps.pool, job_id)
    if job is None:
        return not_found()
    return json_response(views.job_status(job, job_id))


@router.get("/jobs/{job_id}", response_model=models.JobDetail, responses=models.errors(401, 404))
async def job_detail(
    job_id: str, request: Request, deps: DepsDep, x_signature: Signature = None
) -> Response:
    """Counters and finished lots, also before completion (Decision 6)."""
    if deps.options.sign_open_routes and await _open_route_refused(request, deps, job_id):
        return invalid_signature()
    job = await store.get_job(deps.pool, job_id)
    if job is None:
        return not_found()
    finished_only = job["status"] != "completed"
    first = await stream.first_chunk(deps, job, finished_only=finished_only)
    head, tail = stream.split_around(dumps(views.job_detail(job, job_id, [])), b'"results":[]')

    def render(chunk: list[asyncpg.Record], is_first: bool) -> bytes:
        lots = (dumps(views.result_lot(lot, placeholder=True))[:-1] for lot in chunk)
        return (b"" if is_first else b",") + b",".join(lots)

    return stream.respond(
        deps,
        job,
        first,
        head=head,
        render=render,
        tail=tail,
        media_type="application/json",
        finished_only=finished_only,
    )


def _int_param(name: str, raw: str | None, default: int) -> int | Response:
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        shown = raw if len(raw) <= 100 else raw[:100] + "..."
        return error(400, f"Invalid parameter: invalid literal for int() with base 10: {shown!r}")
    if value < 0:
        return error(400, f"Invalid parameter: {name} must not be negative")
    return min(value, MAX_OFFSET)


@router.get(
    "/batch-jobs",
    response_model=models.JobsPage,
    responses=models.errors(400, 401),
)
async def list_jobs(
    request: Request,
    deps: DepsDep,
    status: str | None = None,
    limit: str | None = None,
    offset: str | None = None,
    x_signature: Signature = None,
) -> Response:
    """Jobs newest first; ``pagination.total`` counts every matching job (not the page)."""
    if not await signed(request, deps, None):
        return invalid_signature()
    page_size = _int_param("limit", limit, 10)
    if isinstance(page_size, Response):
        return page_size
    start = _int_param("offset", offset, 0)
    if isinstance(start, Response):
        return start
    page_size = min(page_size, deps.options.max_page)
    if status is not None and "\x00" in status:
        rows, total = list[asyncpg.Record](), 0
    else:
        rows, total = await store.list_jobs(deps.pool, status=status, limit=page_size, offset=start)
    return json_response(
        {
            "jobs": [views.list_item(row) for row in rows],
            "pagination": {"limit": page_size, "offset": start, "total": total},
        }
    )


@router.post(
    "/batch-jobs/{job_id}/cancel",
    response_model=models.Cancelled,
    responses={400: {"model": models.CancelRefused}, **models.errors(401, 404, 413, 503)},
)
async def cancel(
    job_id: str, request: Request, deps: DepsDep, x_signature: Signature = None
) -> Response:
    """Mark the job cancelled and publish JobCancelRequested on jobs.control.

    The conditional UPDATE and the publish share one transaction: the row is committed only
    after Kafka acknowledged the event, so a 200 means the stages will hear of it, and a poll
    right after the 200 already reads ``cancelled``. A failed or timed-out publish rolls the row
    back (500/503 ``Failed to cancel job``).
    """
    if not await signed(request, deps, job_id):
        return invalid_signature()
    job = await store.get_job(deps.pool, job_id)
    if job is None:
        return not_found()
    async with deps.pool.acquire() as conn, conn.transaction():
        row = await store.mark_cancelled(conn, job["job_id"], message=CANCEL_MESSAGE)
        if row is None:
            current = await store.get_job(conn, job_id)
            if current is None:
                return not_found()
            return _not_cancellable(current["status"])
        async with asyncio.timeout(deps.options.cancel_publish_timeout_s):
            await deps.publisher.publish(JobCancelRequested(job_id=job["job_id"]))
    deps.metrics.cancels.inc()
    return json_response(
        {"job_id": job_id, "message": "Job successfully cancelled", "status": "cancelled"}
    )


def _not_cancellable(status: str) -> Response:
    return error(
        400,
        "Job cannot be cancelled",
        message="Only pending, processing, or translating jobs can be cancelled. "
        f"Current status: {status}",
        status=status,
    )
