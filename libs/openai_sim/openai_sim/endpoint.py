"""The common envelope of every /v1 call: auth, faults, latency, headers, stats, error bodies."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from openai_sim.errors import INVALID, JSON_PARSE_MESSAGE, ApiError, bad
from openai_sim.state import Sim
from openai_sim.stats import Call

JSON = "application/json"


@dataclass(slots=True)
class Reply:
    body: Any
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    media_type: str = JSON


Handler = Callable[[Request, Sim, Call], Awaitable[Reply]]


def _auth(request: Request, sim: Sim) -> None:
    header = request.headers.get("authorization", "")
    if not header.startswith("Bearer ") or not header[7:].strip():
        raise ApiError(
            401,
            "You didn't provide an API key. You need to provide your API key in "
            "an Authorization header using Bearer auth (i.e. Authorization: Bearer "
            "YOUR_KEY), or as the password field (i.e. sk-...) if you're accessing "
            "the API from your browser and are prompted for a username and password. "
            "You can obtain an API key from https://platform.openai.com/account/api-keys.",
            type_=INVALID,
        )
    key = header[7:].strip()
    if not key.startswith(sim.cfg["auth"]["key_prefix"]):
        shown = key[:3] + "*" * 4 + key[-4:] if len(key) > 8 else key
        raise ApiError(
            401,
            f"Incorrect API key provided: {shown}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            code="invalid_api_key",
        )


async def _wait_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


class DroppedResponse(Response):
    """Starts a response, sends half a body, then fails so the server drops the connection."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"id": "resp_', "more_body": True})
        raise ConnectionAbortedError("openai_sim: injected connection drop")


def endpoint(name: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def run(request: Request) -> Response:
        started = time.perf_counter()
        sim: Sim = request.app.state.sim
        retry = request.headers.get("x-stainless-retry-count", "0")
        call = Call(
            endpoint=name,
            retry_count=int(retry) if retry.isdigit() else 0,
            request_id="req_" + secrets.token_hex(16),
        )
        fault = None
        try:
            _auth(request, sim)
            fault = sim.faults.pick(name)
            reply = await handler(request, sim, call)
        except ApiError as exc:
            reply = Reply(exc.body(), status=exc.status, headers=exc.headers)
            call.error_code = exc.code or exc.type
        if fault is not None:
            call.fault = fault.kind if fault.error is None else f"error_{fault.error.status}"
            if fault.error is not None:
                reply = Reply(
                    fault.error.body(),
                    status=fault.error.status,
                    headers={**reply.headers, **fault.error.headers},
                )
                call.error_code = fault.error.code or fault.error.type
        call.status = reply.status
        sim.stats.record(call, sim_time=sim.clock.now())
        delay = sim.faults.latency(name, call.kind)
        if fault is not None and fault.kind == "timeout":
            delay += fault.sleep_s
        if delay:
            await asyncio.sleep(delay)
        if fault is not None and fault.kind == "hang":
            await _wait_disconnect(request)
            return Response(b"", status_code=499)
        if fault is not None and fault.kind == "drop":
            return DroppedResponse()
        headers = reply.headers
        if "x-ratelimit-limit-requests" not in headers:
            headers.update(sim.limiter.peek(call.model or "*"))
        headers["x-request-id"] = call.request_id
        headers["openai-version"] = "2020-10-01"
        headers["openai-organization"] = sim.cfg["organization"]
        headers["openai-processing-ms"] = str(int((time.perf_counter() - started) * 1000))
        if fault is not None and fault.kind == "malformed":
            return Response(b'{"id": "resp_broken", "object": "respo', 200, headers, JSON)
        content = reply.raw if reply.raw is not None else orjson.dumps(reply.body)
        return Response(content, reply.status, headers, reply.media_type)

    return run


async def json_body(request: Request) -> tuple[bytes, Any]:
    raw = await request.body()
    try:
        return raw, orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise bad(JSON_PARSE_MESSAGE) from None
