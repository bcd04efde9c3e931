"""An httpx transport for HTTP/1.1 on asyncio streams (framing in :mod:`gen_common.http1_wire`).

Why not httpcore: its connection pool costs O(connections) work per request
(``_assign_requests_to_connections``); with 64 image checks in flight it was 40 % of vision's
CPU, and it capped the notifier at ~170 deliveries/s. Our outside calls need little of HTTP: one
request per connection at a time, keep-alive, no redirects (callers follow them by hand, each hop
SSRF-checked), no proxies, no HTTP/2. :class:`Http1Transport` gives exactly that to an
``httpx.AsyncClient``; idle connections are kept per (scheme, TLS name, address, port), so taking
one is O(1).

The transport dials the URL's host as given: callers that must connect only to a checked address
(:mod:`gen_common.safe_http`) put the checked IP in the URL and the TLS name in the request's
``sni_hostname`` extension, as they would for httpx's own transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import OrderedDict
from collections.abc import AsyncIterator

import httpx

from gen_common.http1_wire import (
    MAX_HEAD,
    NO_BODY_STATUS,
    Head,
    ProtocolError,
    StaleConnection,
    body_chunks,
    close,
    keeps_alive,
    read_head,
)

Key = tuple[str, str, str, int]
Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class _Body(httpx.AsyncByteStream):
    """A response body read straight from the connection; the connection goes back to the idle
    set once the body was read in full, and is closed if the reader stops early."""

    def __init__(
        self,
        transport: Http1Transport,
        key: Key,
        stream: Stream,
        head: Head,
        *,
        empty: bool,
        read_timeout: float | None,
    ) -> None:
        self._transport, self._key, self._stream = transport, key, stream
        self._headers, self._http10 = dict(head.fields), head.http10
        self._empty, self._timeout = empty, read_timeout
        self._complete = empty

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._empty:
            return
        chunks = body_chunks(self._stream[0], self._headers)
        try:
            while True:
                try:
                    async with asyncio.timeout(self._timeout):
                        chunk = await anext(chunks)
                except StopAsyncIteration:
                    break
                yield chunk
        except TimeoutError as exc:
            raise httpx.ReadTimeout("timed out reading the body") from exc
        except (OSError, asyncio.IncompleteReadError) as exc:
            raise httpx.ReadError(f"body read failed: {exc!r}") from exc
        except ProtocolError as exc:
            raise httpx.RemoteProtocolError(str(exc)) from exc
        finally:
            await chunks.aclose()
        self._complete = True

    async def aclose(self) -> None:
        if self._complete and keeps_alive(self._headers, http10=self._http10):
            self._transport.give_back(self._key, self._stream)
        else:
            await close(self._stream[1])


class Http1Transport(httpx.AsyncBaseTransport):
    """HTTP/1.1 with keep-alive; at most ``max_idle`` idle connections in all (like httpx's
    ``max_keepalive_connections``): past it, the least recently used one is closed, so a stream
    of distinct image hosts never piles up open sockets."""

    def __init__(self, *, tls: ssl.SSLContext | None = None, max_idle: int = 64) -> None:
        self._tls = tls
        self._max_idle = max_idle
        self._idle: OrderedDict[Key, list[Stream]] = OrderedDict()  # least recently used first
        self._idle_count = 0

    def give_back(self, key: Key, stream: Stream) -> None:
        self._idle.setdefault(key, []).append(stream)
        self._idle.move_to_end(key)
        self._idle_count += 1
        while self._idle_count > self._max_idle:
            oldest = next(iter(self._idle))
            self._take(oldest)[1].close()

    def _take(self, key: Key) -> Stream:
        """The newest idle connection of ``key`` (which must have one)."""
        idle = self._idle[key]
        stream = idle.pop()
        if not idle:
            del self._idle[key]
        self._idle_count -= 1
        return stream

    async def aclose(self) -> None:
        streams = [s for idle in self._idle.values() for s in idle]
        self._idle.clear()
        self._idle_count = 0
        for _, writer in streams:
            await close(writer)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        sni = request.extensions.get("sni_hostname")
        key = (url.scheme, sni or url.host, url.host, url.port or _default_port(url.scheme))
        timeouts = request.extensions.get("timeout", {})
        head = _request_head(request, await request.aread())
        while key in self._idle:
            with contextlib.suppress(StaleConnection):
                return await self._exchange(key, self._take(key), request, head, timeouts)
        stream = await self._connect(key, timeouts.get("connect"))
        try:
            return await self._exchange(key, stream, request, head, timeouts)
        except StaleConnection as exc:
            raise httpx.RemoteProtocolError("connection closed without an answer") from exc

    async def _connect(self, key: Key, connect_s: float | None) -> Stream:
        scheme, name, host, port = key
        tls = None
        if scheme == "https":
            tls = self._tls = self._tls or ssl.create_default_context()  # loading CAs is slow
        try:
            async with asyncio.timeout(connect_s):
                return await asyncio.open_connection(
                    host, port, ssl=tls, server_hostname=name if tls else None, limit=MAX_HEAD
                )
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"connect to {host}:{port} timed out") from exc
        except OSError as exc:  # refused, unreachable, TLS verification failed
            raise httpx.ConnectError(f"connect to {host}:{port} failed: {exc}") from exc

    async def _exchange(
        self,
        key: Key,
        stream: Stream,
        request: httpx.Request,
        head: bytes,
        timeouts: dict[str, float | None],
    ) -> httpx.Response:
        reader, writer = stream
        answered = False
        try:
            try:  # a kept-alive connection the peer closed fails here, before any answer
                writer.write(head)
                async with asyncio.timeout(timeouts.get("write")):
                    await writer.drain()
                async with asyncio.timeout(timeouts.get("read")):
                    answer = await read_head(reader)
            except (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError) as exc:
                raise StaleConnection() from exc
            answered = True
        except TimeoutError as exc:
            raise httpx.ReadTimeout("timed out waiting for the answer") from exc
        except ProtocolError as exc:
            raise httpx.RemoteProtocolError(str(exc)) from exc
        except (OSError, asyncio.IncompleteReadError) as exc:
            raise httpx.ReadError(f"exchange failed: {exc!r}") from exc
        finally:
            if not answered:  # any failure, a cancel included: the connection is unusable
                writer.close()
        empty = request.method == "HEAD" or answer.status in NO_BODY_STATUS
        body = _Body(self, key, stream, answer, empty=empty, read_timeout=timeouts.get("read"))
        return httpx.Response(
            answer.status,
            headers=answer.fields,
            stream=body,
            extensions={
                "http_version": b"HTTP/1.0" if answer.http10 else b"HTTP/1.1",
                "reason_phrase": answer.reason.encode("latin-1"),
            },
        )


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def _request_head(request: httpx.Request, body: bytes) -> bytes:
    target = request.url.raw_path.decode("ascii") or "/"
    lines = [f"{request.method} {target} HTTP/1.1"]
    lines += [
        f"{k.decode('latin-1')}: {v.decode('latin-1')}"
        for k, v in request.headers.raw
        if k.lower() not in (b"content-length", b"transfer-encoding")
    ]
    if body or request.method not in ("GET", "HEAD"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
