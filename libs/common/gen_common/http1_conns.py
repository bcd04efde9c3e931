"""Keep-alive HTTP/1.1 connections on asyncio streams, behind our httpx and httpx2 transports.

Why not httpcore: its connection pool costs O(connections) work per request
(``_assign_requests_to_connections``); with 64 image checks in flight it was 40 % of vision's
CPU, it capped the notifier at ~170 deliveries/s, and the OpenAI SDK's httpx2 client (the same
pool) was a quarter of vision's and translate's CPU. Our outside calls need little of HTTP: one
request per connection at a time, keep-alive, no redirects (image checks follow them by hand,
each hop SSRF-checked), no proxies, no HTTP/2.

:class:`Connections` sends one request (its head and body already encoded) and answers the
response head plus a :class:`Body` to read. Idle connections are kept per (scheme, TLS name,
address, port), so taking one is O(1); at most ``max_idle`` in all, least recently used closed
first. Failures are :mod:`gen_common.http1_wire`'s errors; the transports
(:mod:`gen_common.http1`, :mod:`gen_common.http1_openai`) map them to their library's.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping

import certifi

from gen_common.http1_wire import (
    MAX_HEAD,
    NO_BODY_STATUS,
    ConnectFailed,
    ConnectTimedOut,
    Head,
    ProtocolError,
    ReadFailed,
    ReadTimedOut,
    Request,
    StaleConnection,
    body_chunks,
    close,
    keeps_alive,
    read_head,
    request_head,
)

Key = tuple[str, str, str, int]  # scheme, TLS name, address dialled, port
Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]
Timeouts = Mapping[str, float | None]


class Body:
    """A response body read straight from the connection: the connection goes back to the idle
    set once the body was read in full, and is closed if the reader stops early."""

    def __init__(
        self,
        conns: Connections,
        key: Key,
        stream: Stream,
        head: Head,
        *,
        empty: bool,
        read_s: float | None,
    ) -> None:
        self._conns, self._key, self._stream = conns, key, stream
        self._headers, self._http10 = dict(head.fields), head.http10
        self._empty, self._timeout = empty, read_s
        self._complete = empty

    async def chunks(self) -> AsyncIterator[bytes]:
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
            raise ReadTimedOut("timed out reading the body") from exc
        except (OSError, asyncio.IncompleteReadError) as exc:
            raise ReadFailed(f"body read failed: {exc!r}") from exc
        finally:
            await chunks.aclose()
        self._complete = True

    async def aclose(self) -> None:
        if self._complete and keeps_alive(self._headers, http10=self._http10):
            self._conns.give_back(self._key, self._stream)
        else:
            await close(self._stream[1])


class Connections:
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

    async def send(self, request: Request) -> tuple[Head, Body]:
        """Send ``request`` on an idle connection to its URL's host (a fresh one if none is
        left or the idle ones turn out closed) and read the answer's head."""
        url = request.url
        sni = request.extensions.get("sni_hostname")
        key = (url.scheme, sni or url.host, url.host, url.port or _default_port(url.scheme))
        timeouts: Timeouts = request.extensions.get("timeout", {})
        head = request_head(request, await request.aread())
        while key in self._idle:
            with contextlib.suppress(StaleConnection):
                return await self._exchange(key, self._take(key), request.method, head, timeouts)
        stream = await self._connect(key, timeouts.get("connect"))
        try:
            return await self._exchange(key, stream, request.method, head, timeouts)
        except StaleConnection as exc:
            raise ProtocolError("connection closed without an answer") from exc

    async def _connect(self, key: Key, connect_s: float | None) -> Stream:
        scheme, name, host, port = key
        tls = None
        if scheme == "https":
            tls = self._tls = self._tls or _tls_context()  # loading CAs is slow: once
        try:
            async with asyncio.timeout(connect_s):
                return await asyncio.open_connection(
                    host, port, ssl=tls, server_hostname=name if tls else None, limit=MAX_HEAD
                )
        except TimeoutError as exc:
            raise ConnectTimedOut(f"connect to {host}:{port} timed out") from exc
        except OSError as exc:  # refused, unreachable, TLS verification failed
            raise ConnectFailed(f"connect to {host}:{port} failed: {exc}") from exc

    async def _exchange(
        self, key: Key, stream: Stream, method: str, head: bytes, timeouts: Timeouts
    ) -> tuple[Head, Body]:
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
            raise ReadTimedOut("timed out waiting for the answer") from exc
        except (OSError, asyncio.IncompleteReadError) as exc:
            raise ReadFailed(f"exchange failed: {exc!r}") from exc
        finally:
            if not answered:  # any failure, a cancel included: the connection is unusable
                writer.close()
        empty = method == "HEAD" or answer.status in NO_BODY_STATUS
        body = Body(self, key, stream, answer, empty=empty, read_s=timeouts.get("read"))
        return answer, body


def _tls_context() -> ssl.SSLContext:
    """Certificate checks against certifi's CA bundle, as httpx and httpx2 do by default."""
    return ssl.create_default_context(cafile=certifi.where())


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80
