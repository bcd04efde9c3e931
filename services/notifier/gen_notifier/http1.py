"""A small HTTP/1.1 POST client that dials only the address the SSRF policy checked.

Why not httpx here: httpcore's pool costs O(connections) syscalls per request, which capped the
notifier at ~170 deliveries/s on the shared 2-core machine. This client keeps what webhook
delivery needs and nothing else: ``gen_common.ssrf.resolve_checked`` before every request (the
checked IP is the dialled IP; TLS uses the host name for SNI and certificate checks), keep-alive
connections per (scheme, host, ip, port), no redirects, no proxies, response bodies read up to a
cap (a longer body closes the connection instead of being drained).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from dataclasses import dataclass

from gen_common.http1_wire import (
    MAX_HEAD,
    ProtocolError,
    StaleConnection,
    body_chunks,
    close,
    keeps_alive,
    read_head,
)
from gen_common.ssrf import CheckedTarget, Resolver, SsrfSettings, resolve_checked

Key = tuple[str, str, str, int]


@dataclass(frozen=True, slots=True)
class Answer:
    status_code: int
    headers: dict[str, str]
    body: bytes
    truncated: bool


@dataclass(slots=True)
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter


class PinnedClient:
    def __init__(
        self,
        policy: SsrfSettings,
        *,
        resolver: Resolver | None = None,
        connect_timeout_s: float = 5.0,
        max_idle: int = 64,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.policy = policy
        self._resolver = resolver
        self._connect_timeout_s = connect_timeout_s
        self._max_idle = max_idle
        self._tls = tls
        self._idle: dict[Key, list[_Conn]] = {}

    async def aclose(self) -> None:
        conns = [c for idle in self._idle.values() for c in idle]
        self._idle.clear()
        for c in conns:
            await _close(c)

    async def post(
        self, url: str, headers: Mapping[str, str], body: bytes, *, read_limit: int
    ) -> Answer:
        """Check ``url`` now, POST ``body`` to the checked address, read at most ``read_limit``."""
        target = await resolve_checked(url, self.policy, resolver=self._resolver)
        key = (target.url.scheme, target.host, target.ip, target.port)
        head = _head(target, headers, len(body))
        while idle := self._idle.get(key):
            conn = idle.pop()
            try:
                return await self._exchange(key, conn, head, body, read_limit)
            except StaleConnection:
                continue
        conn = await self._connect(target)
        try:
            return await self._exchange(key, conn, head, body, read_limit)
        except StaleConnection as exc:
            raise ProtocolError("connection closed without an answer") from exc

    async def _connect(self, target: CheckedTarget) -> _Conn:
        tls: ssl.SSLContext | None = None
        if target.url.scheme == "https":
            if self._tls is None:
                self._tls = ssl.create_default_context()  # built once: loading CAs is slow
            tls = self._tls
        async with asyncio.timeout(self._connect_timeout_s):
            reader, writer = await asyncio.open_connection(
                target.ip,
                target.port,
                ssl=tls,
                server_hostname=target.host if tls else None,
                limit=MAX_HEAD,
            )
        return _Conn(reader, writer)

    async def _exchange(
        self, key: Key, conn: _Conn, head: bytes, body: bytes, read_limit: int
    ) -> Answer:
        reuse = False
        try:
            conn.writer.write(head + body)
            await conn.writer.drain()
            try:
                answer = await read_head(conn.reader)
            except (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError) as exc:
                raise StaleConnection() from exc
            status, headers = answer.status, dict(answer.fields)
            data, complete = await _read_capped(conn.reader, headers, read_limit)
            reuse = complete and keeps_alive(headers, http10=answer.http10)
            return Answer(status, headers, data, truncated=not complete)
        finally:
            if reuse and len(self._idle.get(key, ())) < self._max_idle:
                self._idle.setdefault(key, []).append(conn)
            else:
                await _close(conn)


def _head(target: CheckedTarget, headers: Mapping[str, str], length: int) -> bytes:
    path = target.url.raw_path.decode("ascii") or "/"
    lines = [f"POST {path} HTTP/1.1", f"Host: {target.host_header}"]
    lines += [
        f"{k}: {v}" for k, v in headers.items() if k.lower() not in ("host", "content-length")
    ]
    lines += [f"Content-Length: {length}", "", ""]
    return "\r\n".join(lines).encode("latin-1")


async def _read_capped(
    reader: asyncio.StreamReader, headers: dict[str, str], limit: int
) -> tuple[bytes, bool]:
    """The body up to ``limit`` bytes; ``complete`` False means the connection must close."""
    data = bytearray()
    async for chunk in body_chunks(reader, headers):
        data += chunk
        if len(data) > limit:
            return bytes(data[:limit]), False
    return bytes(data), "content-length" in headers or "chunked" in headers.get(
        "transfer-encoding", ""
    )


async def _close(conn: _Conn) -> None:
    await close(conn.writer)
