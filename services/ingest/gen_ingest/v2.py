"""API v2 write route: ``POST /api/v2/jobs`` (signed requests, contract Decision 4)."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from gen_common import request_auth
from gen_common.events import Mode
from pydantic import ValidationError
from starlette.responses import Response

from gen_ingest import admission, docs, idempotency
from gen_ingest.limits import read_body
from gen_ingest.lot_checks import Lot, check_sizes
from gen_ingest.request_body import Rejected, is_json, parse_json
from gen_ingest.routes import DepsDep, too_many
from gen_ingest.submit import Deps, create_job, events, mode_for, publish_lots
from gen_ingest.validate import Request as Submission
from gen_ingest.wire import V2JSON, error

log = logging.getLogger(__name__)
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
    """Auth, nonce, rate limit, checks, job row, events, answer; in the contract's order.

    The body checks are computed before the database is asked but reported after the auth and
    rate-limit answers, so a request without ``Idempotency-Key`` costs two round trips: the key
    lookup and one statement that records the nonce, takes the rate slot and inserts the jobs
    row (admission.admit), then the events (acks=all) before the 201.
    """
    opts = deps.options
    body = await read_body(request)
    problem: Rejected | Response | None = None
    submission: Submission | None = None
    identity: tuple[str, bytes] | None = None
    try:
        submission = _submission(request, body, deps)
        identity = idempotency.key_of(request.headers.get("idempotency-key"), body, dedupe=False)
    except Rejected as exc:
        problem = exc
    except _NotJson:
        problem = error(415, "Content-Type must be application/json")
    job = None
    mode: Mode = "realtime"
    if problem is None and identity is None and submission is not None:
        mode = mode_for(len(submission.lots), opts)
        job = admission.NewJob(
            job_id=uuid.uuid4(),
            mode=mode,
            languages=submission.languages,
            total_lots=len(submission.lots),
            webhook_url=submission.webhook_url,
        )
    async with deps.pool.acquire() as conn:
        signed = await request_auth.check_signature(
            conn,
            method=request.method,
            path=request.scope.get("raw_path", PATH.encode()).decode("latin-1"),
            query=request.scope.get("query_string", b"").decode("latin-1"),
            headers=auth_headers(request),
            body=body,
            skew_s=opts.clock_skew_s,
        )
        admitted = await admission.admit(
            conn,
            client_id=signed.client_id,
            nonce=signed.nonce,
            bucket=f"v2:{signed.client_id}",
            rate_per_s=opts.rate_per_s,
            burst=opts.rate_burst,
            api_version=2,
            job=job,
        )
    del body
    if not admitted.fresh_nonce:
        raise request_auth.AuthError("replayed nonce")
    if admitted.wait_s:
        return too_many(admitted.wait_s)
    if isinstance(problem, Rejected):
        raise problem
    if problem is not None:
        return problem
    assert submission is not None
    client_id = signed.client_id
    if job is not None:
        assert admitted.created_at is not None
        await publish(deps, job.job_id, submission, mode=mode, client_id=client_id)
        return _created(opts.public_base, job.job_id, mode, submission, admitted.created_at)
    assert identity is not None

    async def produce() -> Response:
        created = await create_job(
            deps,
            submission,
            mode=mode_for(len(submission.lots), opts),
            client_id=client_id,
            api_version=2,
        )
        return _created(
            opts.public_base, created.job_id, created.mode, submission, created.created_at
        )

    key, digest = identity
    return await idempotency.once(
        deps.pool,
        client_id=client_id,
        key=key,
        request_hash=digest,
        ttl_s=opts.idempotency_ttl_s,
        produce=produce,
    )


class _NotJson(Exception):
    """The Content-Type is not JSON (415)."""


def _submission(request: Request, body: bytes | bytearray, deps: Deps) -> Submission:
    if not is_json(request.headers.get("content-type")):
        raise _NotJson
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
    check_sizes(submission.lots, deps.options)
    return submission


async def publish(
    deps: Deps, job_id: uuid.UUID, submission: Submission, *, mode: Mode, client_id: str
) -> None:
    """The job's events, acks=all, within the deadline; on any failure the job is aborted."""
    await publish_lots(
        deps, job_id, events(job_id, submission, mode=mode, client_id=client_id, api_version=2)
    )


def _created(
    public_base: str,
    job_id: uuid.UUID,
    mode: str,
    submission: Submission,
    created_at: datetime,
) -> Response:
    base = f"{public_base}{PATH}/{job_id}"
    resource: dict[str, Any] = {
        "job_id": str(job_id),
        "status": "pending",
        "mode": mode,
        "total_lots": len(submission.lots),
        "languages": submission.languages,
        "webhook_url": submission.webhook_url,
        "created_at": created_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "links": {"self": base, "lots": f"{base}/lots"},
    }
    return V2JSON(resource, status_code=201, headers={"Location": base})
