"""POST /v1/batches, GET /v1/batches[/{id}], POST /v1/batches/{id}/cancel."""

from __future__ import annotations

import secrets
from typing import Any

from starlette.requests import Request

from openai_sim.batch_lines import LineRunner
from openai_sim.batch_model import Batch
from openai_sim.endpoint import Reply, json_body
from openai_sim.errors import bad, missing, not_found, unsupported_value
from openai_sim.routes import run_request
from openai_sim.state import Sim
from openai_sim.stats import Call

ENDPOINTS = (
    "/v1/responses",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/completions",
    "/v1/moderations",
    "/v1/images/generations",
    "/v1/images/edits",
    "/v1/videos",
)


def runner(sim: Sim) -> LineRunner:
    def run(body: Any, seed: int) -> dict[str, Any]:
        call = Call(endpoint="batch_line", retry_count=0, request_id="")
        return run_request(body, sim=sim, call=call, seed=seed, batch=True)[0]

    return run


async def refresh_all(sim: Sim) -> None:
    run = runner(sim)
    for batch in list(sim.batches.batches.values()):
        if batch.status in ("validating", "in_progress", "finalizing", "cancelling"):
            await sim.batches.refresh(batch, run)


def _find(sim: Sim, batch_id: str) -> Batch:
    batch = sim.batches.batches.get(batch_id)
    if batch is None:
        raise not_found(f"No batch found with id '{batch_id}'.", param="batch_id")
    return batch


async def create_batch(request: Request, sim: Sim, call: Call) -> Reply:
    _raw, body = await json_body(request)
    if not isinstance(body, dict):
        raise missing("input_file_id")
    for name in ("input_file_id", "endpoint", "completion_window"):
        if body.get(name) is None:
            raise missing(name)
    if body["endpoint"] not in ENDPOINTS:
        raise unsupported_value("endpoint", body["endpoint"], ENDPOINTS)
    if body["completion_window"] != "24h":
        raise unsupported_value("completion_window", body["completion_window"], ("24h",))
    metadata = body.get("metadata")
    if metadata is not None and (not isinstance(metadata, dict) or len(metadata) > 16):
        raise bad(
            "Invalid 'metadata': expected an object with at most 16 properties.",
            param="metadata",
            code="invalid_value",
        )
    sim.files.get(body["input_file_id"])
    now = sim.clock.now()
    batch = Batch(
        id="batch_" + secrets.token_hex(12),
        endpoint=body["endpoint"],
        input_file_id=body["input_file_id"],
        completion_window="24h",
        metadata=metadata,
        created_at=now,
        expires_at=now + float(sim.cfg["batch"]["completion_window_s"]),
    )
    sim.batches.batches[batch.id] = batch
    return Reply(batch.as_json())


async def get_batch(request: Request, sim: Sim, call: Call) -> Reply:
    batch = _find(sim, request.path_params["batch_id"])
    await sim.batches.refresh(batch, runner(sim))
    return Reply(batch.as_json())


async def list_batches(request: Request, sim: Sim, call: Call) -> Reply:
    await refresh_all(sim)
    raw_limit = request.query_params.get("limit", "20")
    limit = int(raw_limit) if raw_limit.isdigit() else 0
    if not 1 <= limit <= 100:
        raise bad(
            "Invalid 'limit': expected an integer between 1 and 100.",
            param="limit",
            code="invalid_value",
        )
    ordered = sorted(sim.batches.batches.values(), key=lambda b: b.created_at, reverse=True)
    after = request.query_params.get("after")
    if after:
        ids = [b.id for b in ordered]
        ordered = ordered[ids.index(after) + 1 :] if after in ids else []
    page = ordered[:limit]
    data = [b.as_json() for b in page]
    return Reply(
        {
            "object": "list",
            "data": data,
            "first_id": page[0].id if page else None,
            "last_id": page[-1].id if page else None,
            "has_more": len(ordered) > limit,
        }
    )


async def cancel_batch(request: Request, sim: Sim, call: Call) -> Reply:
    batch = _find(sim, request.path_params["batch_id"])
    run = runner(sim)
    await sim.batches.refresh(batch, run)
    if batch.status not in ("validating", "in_progress"):
        raise bad(f"Cannot cancel a batch with status '{batch.status}'.")
    await sim.batches.cancel(batch, run)
    return Reply(batch.as_json())
