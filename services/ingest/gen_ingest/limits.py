"""The request body limit, enforced while the body streams in.

:class:`BodyLimit` is an ASGI middleware: a declared ``Content-Length`` above the limit is answered
413 before a byte of the body is read; without one (chunked), the bytes are counted as they arrive
and the request fails with 413 as soon as the count passes the limit, so at most ``limit`` bytes
are ever held. :func:`read_body` collects the body once into one ``bytearray``.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

TOO_LARGE = b'{"error":"Request body too large"}\n'


class BodyTooLarge(Exception):
    """The body passed the limit while streaming in."""


class BodyLimit:
    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and (not value.isdigit() or int(value) > self.limit):
                await _too_large(send)
                return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except BodyTooLarge:
            if not started:
                await _too_large(send)


async def _too_large(send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(TOO_LARGE)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": TOO_LARGE})


async def read_body(request: Request) -> bytearray:
    """The whole body as one buffer, never copied (the middleware bounds its size)."""
    buffer = bytearray()
    async for chunk in request.stream():
        buffer += chunk
    return buffer
