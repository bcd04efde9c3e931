"""v1 results: batch-results, its download (JSON as the original, or JSON Lines) (§1.3, §1.5).

Lots are read in keyset chunks of ``download_chunk`` rows; a job that fits in one chunk is
answered in one piece (with Content-Length, like the original), a larger one is streamed.
"""

from __future__ import annotations

import json
import textwrap
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from gen_status import models, store, stream, views
from gen_status.deps import Deps, DepsDep, signed
from gen_status.routes import Signature, invalid_signature, not_found
from gen_status.wire import dumps, error, v1_time

router = APIRouter(prefix="/api/v1", tags=["v1"])
Format = Annotated[str | None, Query(description="`jsonl` for JSON Lines, one lot per line")]


async def _completed_job(
    request: Request, deps: Deps, job_id: str, *, long_202: bool
) -> tuple[asyncpg.Record, list[asyncpg.Record]] | Response:
    """Auth, existence, completion and the first chunk of lots, in the original's check order."""
    if not await signed(request, deps, job_id):
        return invalid_signature()
    job = await store.get_job(deps.pool, job_id)
    if job is None:
        return not_found()
    if job["status"] != "completed":
        status = job["status"]
        extra: dict[str, Any] = {"status": status}
        if long_202:
            extra["message"] = (
                f"Job is currently {status}. Results will be available when status is 'completed'."
            )
        return error(202, "Job not completed", **extra)
    first = await stream.first_chunk(deps, job)
    if not first:
        return error(404, "Results not found")
    return job, first


def _completed_at(job: asyncpg.Record) -> str | None:
    return v1_time(job["completed_at"] or job["updated_at"])


@router.get(
    "/batch-results/{job_id}",
    response_model=models.BatchResults,
    responses={202: {"model": models.NotCompleted}, **models.errors(401, 404, 413)},
)
async def batch_results(
    job_id: str, request: Request, deps: DepsDep, x_signature: Signature = None
) -> Response:
    found = await _completed_job(request, deps, job_id, long_202=True)
    if isinstance(found, Response):
        return found
    job, first = found
    # Compact, sorted keys: {"completed_at","job_id","results":{"job_id","lots","status"},"status"}
    ids = dumps(job_id).rstrip(b"\n")
    head = b'{"completed_at":' + dumps(_completed_at(job)).rstrip(b"\n") + b',"job_id":' + ids
    head += b',"results":{"job_id":' + ids + b',"lots":['

    def render(chunk: list[asyncpg.Record], is_first: bool) -> bytes:
        parts = b",".join(dumps(views.result_lot(lot)).rstrip(b"\n") for lot in chunk)
        return parts if is_first else b"," + parts

    tail = b'],"status":"completed"},"status":"completed"}\n'
    return stream.respond(
        deps, job, first, head=head, render=render, tail=tail, media_type="application/json"
    )


def _download_head(job: asyncpg.Record, job_id: str) -> bytes:
    """The original's ``json.dumps(indent=2, ensure_ascii=False)`` up to the lots array."""
    header = {
        "job_id": job_id,
        "status": job["status"],
        "completed_at": _completed_at(job),
        "generated_at": v1_time(job["created_at"]),
        "total_lots": job["total_lots"],
        "processed_lots": job["completed_lots"],
        "failed_lots": job["failed_lots"],
        "languages": list(job["languages"]),
    }
    text = json.dumps(header, indent=2, ensure_ascii=False).removesuffix("\n}")
    results = json.dumps({"job_id": job_id, "status": "completed"}, indent=2, ensure_ascii=False)
    results = textwrap.indent(results.removesuffix("\n}"), "  ").lstrip()
    return f'{text},\n  "results": {results},\n    "lots": [\n'.encode()


def _download_lots(chunk: list[asyncpg.Record], is_first: bool) -> bytes:
    parts = (
        textwrap.indent(json.dumps(views.result_lot(lot), indent=2, ensure_ascii=False), " " * 6)
        for lot in chunk
    )
    text = ",\n".join(parts)
    return (text if is_first else ",\n" + text).encode()


@router.get(
    "/batch-results/{job_id}/download",
    response_model=models.Download,
    responses={
        200: {"content": {"application/x-ndjson": {"schema": {"type": "string"}}}},
        202: {"model": models.NotCompleted},
        **models.errors(401, 404, 413),
    },
)
async def download(
    job_id: str,
    request: Request,
    deps: DepsDep,
    format: Format = None,
    x_signature: Signature = None,
) -> Response:
    """The results as a file: the original's JSON, or JSON Lines with ``?format=jsonl``."""
    if format == "jsonl":
        return await download_jsonl(job_id, request, deps)
    found = await _completed_job(request, deps, job_id, long_202=False)
    if isinstance(found, Response):
        return found
    job, first = found
    return stream.respond(
        deps,
        job,
        first,
        head=_download_head(job, job_id),
        render=_download_lots,
        tail=b"\n    ]\n  }\n}",
        media_type="application/json",
        headers={"Content-Disposition": f"attachment; filename=batch_results_{job['job_id']}.json"},
    )


@router.get(
    "/batch-results/{job_id}/download.jsonl",
    responses={
        200: {"content": {"application/x-ndjson": {"schema": {"type": "string"}}}},
        202: {"model": models.NotCompleted},
        **models.errors(401, 404, 413),
    },
    response_class=Response,
)
async def download_jsonl(
    job_id: str, request: Request, deps: DepsDep, x_signature: Signature = None
) -> Response:
    """JSON Lines: one lot (as in batch-results) per line."""
    found = await _completed_job(request, deps, job_id, long_202=False)
    if isinstance(found, Response):
        return found
    job, first = found

    def render(chunk: list[asyncpg.Record], is_first: bool) -> bytes:
        return b"".join(dumps(views.result_lot(lot)) for lot in chunk)

    return stream.respond(
        deps,
        job,
        first,
        head=b"",
        render=render,
        tail=b"",
        media_type="application/x-ndjson",
        headers={
            "Content-Disposition": f"attachment; filename=batch_results_{job['job_id']}.jsonl"
        },
    )
