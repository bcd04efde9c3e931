"""POST /v1/responses and GET /v1/models[/{id}]."""

from __future__ import annotations

import zlib
from typing import Any

from starlette.requests import Request

from openai_sim import content, errors, models, responses, validation
from openai_sim.endpoint import Reply, json_body
from openai_sim.state import Sim
from openai_sim.stats import Call
from openai_sim.tokens import PromptCache


def run_request(
    body: Any, *, sim: Sim, call: Call, seed: int, batch: bool = False
) -> tuple[dict[str, Any], dict[str, str]]:
    """The one code path behind sync calls and batch lines; raises ApiError on a 4xx/429.

    Returns the Response body and the rate-limit headers (none for batch lines).
    """
    req = validation.parse(body, now=sim.clock.now())
    call.model = req.model.id
    call.metadata = req.metadata
    call.images = req.images
    call.kind = "vision" if req.images else "text"
    headers: dict[str, str] = {}
    if not batch:
        estimate = responses.estimate_tokens(req, sim.cfg["images"])
        headers = sim.limiter.take(req.model.id, estimate + (req.max_output_tokens or 0))
    try:
        content.check_images(req, sim.cfg["images"])
    except errors.ApiError as exc:
        exc.headers = {**headers, **exc.headers}
        raise
    cache: PromptCache | None = sim.cache
    if batch:
        cache = None if req.model.pre_gpt5 else sim.batches.cache
    seed ^= sim.cfg["seed"]
    result = responses.build(req, seed=seed, now=sim.clock.now(), cfg=sim.cfg, cache=cache)
    return result, headers


async def create_response(request: Request, sim: Sim, call: Call) -> Reply:
    raw, body = await json_body(request)
    result, headers = run_request(body, sim=sim, call=call, seed=zlib.crc32(raw))
    return Reply(result, headers=headers)


async def list_models(request: Request, sim: Sim, call: Call) -> Reply:
    now = sim.clock.now()
    data = [models.as_json(m) for m in models.MODELS.values() if models.is_served(m, now)]
    return Reply({"object": "list", "data": data})


async def get_model(request: Request, sim: Sim, call: Call) -> Reply:
    model_id = request.path_params["model"]
    model = models.lookup(model_id, sim.clock.now())
    if model is None:
        raise errors.model_not_found(model_id)
    call.model = model.id
    return Reply(models.as_json(model))
