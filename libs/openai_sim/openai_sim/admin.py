"""The /_sim/ admin API: stats, call log, reset, config merge, clock control."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from openai_sim import config, state
from openai_sim.state import Sim


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json")


async def _patch(request: Request) -> dict[str, Any]:
    raw = await request.body()
    patch = orjson.loads(raw) if raw.strip() else {}
    if not isinstance(patch, dict):
        raise ValueError("admin body must be a JSON object")
    return patch


def _sim(request: Request) -> Sim:
    sim: Sim = request.app.state.sim
    return sim


async def health(request: Request) -> Response:
    return _json({"ok": True})


async def stats(request: Request) -> Response:
    return _json(_sim(request).stats.snapshot())


async def calls(request: Request) -> Response:
    log = list(_sim(request).stats.log)
    limit = request.query_params.get("limit")
    if limit and limit.isdigit():
        log = log[-int(limit) :]
    return _json({"data": log})


async def reset(request: Request) -> Response:
    """Back to the start-up config with empty counters, files, batches, caches and buckets."""
    request.app.state.sim = state.build(config.build(request.app.state.start_config))
    return _json({"ok": True})


async def get_config(request: Request) -> Response:
    return _json(_sim(request).cfg)


async def set_config(request: Request) -> Response:
    sim = _sim(request)
    patch = await _patch(request)
    config.merge(sim.cfg, patch)
    sim.apply_config(patch)
    return _json(sim.cfg)


async def clock(request: Request) -> Response:
    """Body: any of {"advance": seconds, "set": epoch seconds, "speed": factor}."""
    sim = _sim(request)
    patch = await _patch(request)
    if patch.get("set") is not None:
        sim.clock.set(float(patch["set"]))
    if patch.get("advance") is not None:
        sim.clock.advance(float(patch["advance"]))
    if patch.get("speed") is not None:
        sim.clock.set_speed(float(patch["speed"]))
        sim.cfg["clock"]["speed"] = float(patch["speed"])
    return _json({"now": sim.clock.now(), "speed": sim.clock.speed})
