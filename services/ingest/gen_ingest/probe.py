"""POST /api/v1/test-image-validation (api-v1-contract §1.9, Decision 11).

The same checker as the vision pipeline (gen_common.image_check: SSRF guard, HEAD then ranged GET,
content type, size, timeouts, concurrency, the threshold), so the route is no probe into private
networks; rate-limited per client address (GCRA, ``probe_rate_per_s`` / ``probe_rate_burst``).
"""

from __future__ import annotations

import orjson
from fastapi import APIRouter
from fastapi import Request as HttpRequest
from gen_common.image_check import ImagesUnreachable, enforce_threshold
from starlette.responses import Response

from gen_ingest import admission, docs
from gen_ingest.routes import DepsDep, too_many
from gen_ingest.wire import V1JSON, error

MAX_BODY = 1_000_000
router = APIRouter()


@router.post(
    "/api/v1/test-image-validation",
    responses=docs.PROBE_RESPONSES,
    openapi_extra=docs.body("ProbeRequest"),
    summary="Check image URLs the way the pipeline does (no auth, rate-limited per address)",
)
async def test_image_validation(request: HttpRequest, deps: DepsDep) -> Response:
    opts = deps.options
    if deps.images is None:
        return error(503, "Image checks unavailable")
    address = request.client.host if request.client else "unknown"
    async with deps.pool.acquire() as conn:
        wait = await admission.acquire_rate(
            conn, f"probe:{address}", rate_per_s=opts.probe_rate_per_s, burst=opts.probe_rate_burst
        )
    if wait:
        return too_many(wait)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            return error(413, "Request body too large")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return error(400, "Invalid JSON body")
    urls = data.get("urls") if isinstance(data, dict) else None
    if not isinstance(urls, list):
        return error(400, "urls array is required")
    if len(urls) > opts.max_lot_images:
        return error(400, f"Too many urls: {len(urls)} > {opts.max_lot_images}")
    if not all(isinstance(url, str) for url in urls):
        return error(400, "urls must be strings")
    checked = await deps.images.check_lot(urls)
    try:
        enforce_threshold(urls, checked.missing, opts.images.max_unreachable)
    except ImagesUnreachable:
        met = False
    else:
        met = True
    answer = {
        "threshold_met": met,
        "unreachable_urls": checked.missing,
        "valid_urls": checked.valid,
    }
    return V1JSON(answer)
