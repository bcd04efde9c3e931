"""The polling hot path: ``GET /api/v1/batch-status/{id}`` answered as plain ASGI.

Clients poll this route in tight loops, so it skips FastAPI's routing, dependency solving and
exception middleware: one primary-key lookup, one orjson body. It answers exactly what the routed
handler (routes.batch_status, which documents it in OpenAPI) would; anything else (other methods,
signatures required, ids with a slash) falls through to the full app.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from gen_status import store, views
from gen_status.wire import dumps

PREFIX = "/api/v1/batch-status/"
NOT_FOUND = b'{"error":"Job not found"}\n'
UNAVAILABLE_BODY = b'{"error":"Service unavailable"}\n'
_HEADERS = [(b"content-type", b"application/json")]


@dataclass(frozen=True, slots=True)
class _Route:
    """What the metrics middleware reads from ``scope["route"]``."""

    path: str = PREFIX + "{job_id}"


class BatchStatusFastPath:
    def __init__(self, app: ASGIApp, state: Any, unavailable: tuple[type[BaseException], ...]):
        self.app = app
        self.state = state
        self.unavailable = unavailable
        self.route = _Route()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or scope["method"] != "GET" or not path.startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        job_id = path[len(PREFIX) :]
        deps = getattr(self.state, "deps", None)
        if not job_id or "/" in job_id or deps is None or deps.options.sign_open_routes:
            await self.app(scope, receive, send)
            return
        scope["route"] = self.route
        try:
            job = await store.get_job(deps.pool, job_id)
        except self.unavailable:
            await _answer(send, 503, UNAVAILABLE_BODY)
            return
        if job is None:
            await _answer(send, 404, NOT_FOUND)
            return
        await _answer(send, 200, dumps(views.batch_status(job, job_id)))


async def _answer(send: Send, status: int, body: bytes) -> None:
    headers = [*_HEADERS, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
