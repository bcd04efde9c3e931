"""httpx and httpx2 transports on :mod:`gen_common.http1_conns` (keep-alive HTTP/1.1, O(1) per
request).

- :class:`Http1Transport` for an ``httpx.AsyncClient`` (image checks, :mod:`gen_common.safe_http`);
- :class:`OpenAITransport` for the OpenAI SDK's client, which runs on httpx2 (a fork of httpx
  with the same shapes). On httpcore2's pool, the SDK's HTTP plumbing was a quarter of vision's
  and translate's CPU (bench/bench_pipeline.py: with this transport, vision -1.7 ms and
  translate -1.2 ms per lot).

Both give HTTP/1.1 with keep-alive and nothing else (no redirects, proxies or HTTP/2) and dial the
URL's host as given: callers that must connect only to a checked address put the checked IP in
the URL and the TLS name in the request's ``sni_hostname`` extension, as they would for httpx's
own transport. At most ``max_idle`` idle connections in all (like httpx's
``max_keepalive_connections``): past it, the least recently used one is closed, so a stream of
distinct image hosts never piles up open sockets.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable

import httpx
import httpx2

from gen_common.http1_conns import Body, Connections
from gen_common.http1_wire import (
    ConnectFailed,
    ConnectTimedOut,
    Head,
    ReadFailed,
    ReadTimedOut,
    Request,
    WireError,
    response_extensions,
)

ErrorOf = Callable[[WireError], Exception]
_HTTPX: dict[type[WireError], type[Exception]] = {
    ConnectTimedOut: httpx.ConnectTimeout,
    ConnectFailed: httpx.ConnectError,
    ReadTimedOut: httpx.ReadTimeout,
    ReadFailed: httpx.ReadError,
}
_HTTPX2: dict[type[WireError], type[Exception]] = {
    ConnectTimedOut: httpx2.ConnectTimeout,
    ConnectFailed: httpx2.ConnectError,
    ReadTimedOut: httpx2.ReadTimeout,
    ReadFailed: httpx2.ReadError,
}  # anything else, ProtocolError included: RemoteProtocolError


def _httpx_error(exc: WireError) -> Exception:
    return _HTTPX.get(type(exc), httpx.RemoteProtocolError)(str(exc))


def _httpx2_error(exc: WireError) -> Exception:
    return _HTTPX2.get(type(exc), httpx2.RemoteProtocolError)(str(exc))


class _Stream(httpx.AsyncByteStream, httpx2.AsyncByteStream):
    """A response body for either library, its failures in that library's terms."""

    def __init__(self, body: Body, error_of: ErrorOf) -> None:
        self._body, self._error_of = body, error_of

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._body.chunks():
                yield chunk
        except WireError as exc:
            raise self._error_of(exc) from exc

    async def aclose(self) -> None:
        await self._body.aclose()


async def _send(conns: Connections, request: Request, error_of: ErrorOf) -> tuple[Head, _Stream]:
    try:
        head, body = await conns.send(request)
    except WireError as exc:
        raise error_of(exc) from exc
    return head, _Stream(body, error_of)


class Http1Transport(httpx.AsyncBaseTransport):
    def __init__(self, *, tls: ssl.SSLContext | None = None, max_idle: int = 64) -> None:
        self._conns = Connections(tls=tls, max_idle=max_idle)

    async def aclose(self) -> None:
        await self._conns.aclose()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        head, stream = await _send(self._conns, request, _httpx_error)
        extensions = response_extensions(head)
        return httpx.Response(
            head.status, headers=head.fields, stream=stream, extensions=extensions
        )


class OpenAITransport(httpx2.AsyncBaseTransport):
    def __init__(self, *, tls: ssl.SSLContext | None = None, max_idle: int = 64) -> None:
        self._conns = Connections(tls=tls, max_idle=max_idle)

    async def aclose(self) -> None:
        await self._conns.aclose()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        head, stream = await _send(self._conns, request, _httpx2_error)
        extensions = response_extensions(head)
        return httpx2.Response(
            head.status, headers=head.fields, stream=stream, extensions=extensions
        )
