"""Sync mode (one v1 lot): publish it, wait for the pipeline's reply, answer inline (§1.1.1)."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any

from gen_common.events import LotFailed, lot_key

from gen_ingest import store
from gen_ingest.replies import Reply
from gen_ingest.submit import Deps, create_job
from gen_ingest.validate import VERSION, Request

POLL_S = 2.0  # re-read the lots row this often, in case the reply event was missed
FINAL = ("completed", "failed", "cancelled")


@dataclass(slots=True)
class Outcome:
    ok: bool
    descriptions: list[dict[str, str]] = field(default_factory=list)
    missing_images: list[str] = field(default_factory=list)
    pending_languages: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    reason: str = ""


def _from_event(event: Reply) -> Outcome:
    if isinstance(event, LotFailed):
        return Outcome(False, missing_images=list(event.missing_images), reason=event.reason)
    return Outcome(
        True,
        descriptions=[d.model_dump(exclude_none=True) for d in event.descriptions],
        missing_images=list(event.missing_images),
        pending_languages=list(event.pending_languages),
        warnings=list(event.warnings),
    )


def _from_row(row: dict[str, Any]) -> Outcome | None:
    if row["status"] not in FINAL:
        return None
    if row["status"] != "completed" or not row["descriptions"]:
        return Outcome(
            False, missing_images=list(row["missing_images"]), reason=row["error_code"] or ""
        )
    return Outcome(
        True,
        descriptions=[
            {"language": d["language"], "damages": d["damages"]} for d in row["descriptions"]
        ],
        missing_images=list(row["missing_images"]),
        pending_languages=list(row["pending_languages"]),
        warnings=list(row["warnings"]),
    )


async def _reread(deps: Deps, job_id: uuid.UUID) -> Outcome | None:
    async with deps.pool.acquire() as conn:
        row = await store.lot_result(conn, job_id, 0)
    return None if row is None else _from_row(row)


async def process(deps: Deps, req: Request, *, client_id: str) -> tuple[int, dict[str, Any]]:
    """Status and v1 body of a sync request."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deps.options.sync_budget_s
    job_id = uuid.uuid4()
    key = lot_key(job_id, 0)
    future = deps.replies.expect(key)
    try:
        created = await create_job(
            deps, req, mode="sync", client_id=client_id, api_version=1, job_id=job_id
        )
        outcome = None
        while outcome is None and (remaining := deadline - loop.time()) > 0:
            try:
                outcome = _from_event(
                    await asyncio.wait_for(asyncio.shield(future), min(remaining, POLL_S))
                )
            except TimeoutError:
                outcome = await _reread(deps, created.job_id)
        if outcome is None:
            outcome = await _reread(deps, created.job_id)
    finally:
        deps.replies.forget(key)
    return answer(req, outcome, deps.options.sync_language_warning)


def answer(req: Request, outcome: Outcome | None, warn_at: int) -> tuple[int, dict[str, Any]]:
    if outcome is None:
        return 504, {"error": "Processing timed out"}
    if not outcome.ok:
        if outcome.reason == "image_unreachable":
            return 400, {
                "error": "image_unreachable",
                "message": "Too many unreachable images",
                "missing_images": outcome.missing_images,
            }
        return 500, {"error": "Processing failed"}
    lot: dict[str, Any] = {"descriptions": outcome.descriptions, "lot_id": req.lots[0].lot_id}
    if outcome.missing_images:
        lot["missing_images"] = outcome.missing_images
    body: dict[str, Any] = {"lots": [lot], "version": VERSION}
    others = sum(1 for code in req.languages if code.lower() != "en")
    warnings = list(outcome.warnings)
    note = f"processing {others} languages may increase response time"
    if others > warn_at and note not in warnings:
        warnings.insert(0, note)
    if warnings:
        body["warnings"] = warnings
    if outcome.pending_languages:
        body["pending_languages"] = outcome.pending_languages
    return 200, body
