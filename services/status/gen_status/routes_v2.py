"""v2 reads: ``GET /api/v2/jobs/{id}`` and ``GET /api/v2/jobs/{id}/lots`` (signed, Decision 4).

Every request is verified by gen_common.request_auth (key id, ±300 s, nonce replay cache in
PostgreSQL, HMAC over method, raw path, query, timestamp and body hash). A client sees only its own
jobs (``jobs.client_id``); anyone else's job is "not found". Timestamps are RFC 3339 with ``Z``.
Lots are paged by an opaque cursor over ``lot_seq`` (keyset on the primary key).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Query, Request
from gen_common import request_auth
from starlette.responses import Response

from gen_status import models, store, views
from gen_status.deps import Deps, DepsDep, read_body
from gen_status.wire import V2Body, error

router = APIRouter(prefix="/api/v2", tags=["v2"])
SIGNED: dict[str, Any] = {"security": [{"v2Signature": []}]}
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_SEQ = 2**31 - 1  # lots.lot_seq is an integer
_CURSOR = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_LIMIT = re.compile(r"^[0-9]{1,9}$")


def auth_headers(request: Request) -> dict[str, str]:
    """The v2 auth headers, lower-cased; a duplicated one is made unparseable (401)."""
    found: dict[str, str] = {}
    for raw_name, raw_value in request.scope["headers"]:
        name = raw_name.decode("latin-1").lower()
        if name in request_auth.HEADER_NAMES:
            found[name] = "\x00duplicate" if name in found else raw_value.decode("latin-1")
    return found


async def _own_job(request: Request, deps: Deps, job_id: str) -> asyncpg.Record | None:
    """Verify the signed request (raises AuthError -> 401), then load the caller's job."""
    body = await read_body(request)
    async with deps.pool.acquire() as conn:
        verified = await request_auth.verify(
            conn,
            method=request.method,
            path=request.scope.get("raw_path", request.url.path.encode()).decode("latin-1"),
            query=request.scope.get("query_string", b"").decode("latin-1"),
            headers=auth_headers(request),
            body=body,
        )
        job = await store.get_job(conn, job_id)
    if job is None or job["client_id"] != verified.client_id:
        return None
    return job


def encode_cursor(lot_seq: int) -> str:
    return base64.urlsafe_b64encode(f"s{lot_seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int | None:
    if not _CURSOR.fullmatch(cursor):
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    if not re.fullmatch(r"s[0-9]{1,10}", text) or int(text[1:]) > MAX_SEQ:
        return None
    return int(text[1:])


def _links(deps: Deps, job_id: str) -> dict[str, str]:
    base = f"{deps.options.public_base}/api/v2/jobs/{job_id}"
    return {"self": base, "lots": f"{base}/lots"}


@router.get(
    "/jobs/{job_id}",
    response_model=models.V2Job,
    responses=models.errors(401, 404, 413),
    openapi_extra=SIGNED,
    summary="A job's state, counters, token usage and cost (signed v2 request)",
)
async def get_job(job_id: str, request: Request, deps: DepsDep) -> Response:
    job = await _own_job(request, deps, job_id)
    if job is None:
        return error(404, "Job not found")
    body = views.v2_job(job)
    body["webhook_url"] = job["webhook_url"]
    body["links"] = _links(deps, body["job_id"])
    return V2Body(body)


@router.get(
    "/jobs/{job_id}/lots",
    response_model=models.V2LotsPage,
    responses=models.errors(400, 401, 404, 413),
    openapi_extra=SIGNED,
    summary="A job's lots in order, by opaque cursor (signed v2 request)",
)
async def get_lots(
    job_id: str,
    request: Request,
    deps: DepsDep,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    limit: Annotated[str | None, Query(description=f"1-{MAX_LIMIT}, default 100")] = None,
) -> Response:
    job = await _own_job(request, deps, job_id)
    if job is None:
        return error(404, "Job not found")
    after = -1 if cursor is None else decode_cursor(cursor)
    if after is None:
        return error(400, "Invalid cursor")
    if limit is not None and not (_LIMIT.fullmatch(limit) and 1 <= int(limit) <= MAX_LIMIT):
        return error(400, f"limit must be an integer from 1 to {MAX_LIMIT}")
    size = DEFAULT_LIMIT if limit is None else int(limit)
    rows = await store.lots_page(deps.pool, job["job_id"], after_seq=after, limit=size + 1)
    more = len(rows) > size
    rows = rows[:size]
    next_cursor = encode_cursor(rows[-1]["lot_seq"]) if more and rows else None
    links = _links(deps, str(job["job_id"]))
    return V2Body(
        {
            "job_id": str(job["job_id"]),
            "lots": [views.v2_lot(row) for row in rows],
            "next_cursor": next_cursor,
            "links": {
                "job": links["self"],
                "next": None
                if next_cursor is None
                else f"{links['lots']}?cursor={next_cursor}"
                + ("" if limit is None else f"&limit={size}"),
            },
        }
    )
