"""API v2 write route: ``POST /api/v2/jobs`` (signed requests, contract Decision 4)."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from fastapi import APIRouter, Request
from gen_common import request_auth
from pydantic import ValidationError
from starlette.responses import Response

from gen_ingest import docs, idempotency, store
from gen_ingest.limits import read_body
from gen_ingest.routes import DepsDep, too_many
from gen_ingest.submit import create_job, mode_for
from gen_ingest.validate import Lot, Rejected, check_sizes, is_json, parse_json
from gen_ingest.validate import Request as Submission
from gen_ingest.wire import V2JSON, error

router = APIRouter()
PATH = "/api/v2/jobs"


def auth_headers(request: Request) -> dict[str, str]:
    """The auth headers, lower-cased; a duplicated one is made unparseable (401)."""
    found: dict[str, str] = {}
    for raw_name, raw_value in request.scope["headers"]:
        name = raw_name.decode("latin-1").lower()
        if name in request_auth.HEADER_NAMES:
            found[name] = "\x00duplicate" if name in found else raw_value.decode("latin-1")
    return found


@router.post(
    PATH,
    status_code=201,
    responses=docs.JOB_RESPONSES,
    openapi_extra=docs.body("JobCreate") | {"security": [{"v2Signature": []}]},
    summary="Create a job (signed v2 request)",
)
async def create(request: Request, deps: DepsDep) -> Response:
    opts = deps.options
    body = await read_body(request)
    async with deps.pool.acquire() as conn:
        verified = await request_auth.verify(
            conn,
            method=request.method,
            path=request.scope.get("raw_path", PATH.encode()).decode("latin-1"),
            query=request.scope.get("query_string", b"").decode("latin-1"),
            headers=auth_headers(request),
            body=body,
            skew_s=opts.clock_skew_s,
        )
        wait = await store.acquire_rate(
            conn,
            f"v2:{verified.client_id}",
            rate_per_s=opts.rate_per_s,
            burst=opts.rate_burst,
            client_id=verified.client_id,
        )
    if wait:
        return too_many(wait)
    if not is_json(request.headers.get("content-type")):
        return error(415, "Content-Type must be application/json")
    try:
        job = docs.JobCreate.model_validate(parse_json(body))
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise Rejected(422, f"Invalid field {where}: {first['msg']}") from None
    submission = Submission(
        lots=[Lot(lot.lot_id, lot.images, lot.additional_info, lot.webhook) for lot in job.lots],
        languages=job.languages,
        webhook_url=job.webhook_url,
    )
    check_sizes(submission.lots, opts)
    identity = idempotency.key_of(request.headers.get("idempotency-key"), body, dedupe=False)
    del body

    async def produce() -> Response:
        mode = mode_for(len(submission.lots), opts)
        created = await create_job(
            deps, submission, mode=mode, client_id=verified.client_id, api_version=2
        )
        job_id = str(created.job_id)
        base = f"{opts.public_base}{PATH}/{job_id}"
        resource: dict[str, Any] = {
            "job_id": job_id,
            "status": "pending",
            "mode": created.mode,
            "total_lots": len(submission.lots),
            "languages": submission.languages,
            "webhook_url": submission.webhook_url,
            "created_at": created.created_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "links": {"self": base, "lots": f"{base}/lots"},
        }
        return V2JSON(resource, status_code=201, headers={"Location": base})

    if identity is None:
        return await produce()
    key, digest = identity
    return await idempotency.once(
        deps.pool,
        client_id=verified.client_id,
        key=key,
        request_hash=digest,
        ttl_s=opts.idempotency_ttl_s,
        produce=produce,
    )
