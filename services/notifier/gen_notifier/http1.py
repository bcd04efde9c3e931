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
import contextlib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass

from gen_common.ssrf import CheckedTarget, Resolver, SsrfSettings, resolve_checked

MAX_HEAD = 64 * 1024
Key = tuple[str, str, str, int]


class ProtocolError(Exception):
    """The receiver's answer is not valid HTTP/1.1."""


class StaleConnection(Exception):
    """A kept-alive connection was closed by the receiver before any answer."""


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
                status, headers = await _read_head(conn.reader)
            except (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError) as exc:
                raise StaleConnection() from exc
            data, complete = await _read_body(conn.reader, headers, read_limit)
            reuse = complete and headers.get("connection", "").lower() != "close"
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


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    while True:
        try:
            raw = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError as exc:
            raise ProtocolError("response head too large") from exc
        lines = raw.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise ProtocolError(f"bad status line {lines[0][:100]!r}")
        status = int(parts[1])
        if 100 <= status < 200:
            continue  # interim answers (100 Continue) precede the real one
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, sep, value = line.partition(":")
                if not sep:
                    raise ProtocolError("malformed header line")
                headers[name.strip().lower()] = value.strip()
        return status, headers


async def _read_body(
    reader: asyncio.StreamReader, headers: dict[str, str], limit: int
) -> tuple[bytes, bool]:
    """The body up to ``limit`` bytes; ``complete`` False means the connection must close."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        data = bytearray()
        while True:
            size_line = await reader.readuntil(b"\r\n")
            try:
                size = int(size_line.split(b";")[0].strip(), 16)
            except ValueError as exc:
                raise ProtocolError("bad chunk size") from exc
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":
                    pass  # trailer fields, ignored
                return bytes(data), True
            if len(data) + size > limit:
                data += await _read_up_to(reader, limit - len(data))
                return bytes(data), False
            data += await reader.readexactly(size)
            await reader.readexactly(2)
    if "content-length" in headers:
        try:
            length = int(headers["content-length"])
        except ValueError as exc:
            raise ProtocolError("bad content-length") from exc
        if length > limit:
            return await _read_up_to(reader, limit), False
        return await reader.readexactly(length), True
    return await _read_up_to(reader, limit), False  # delimited by close: keep the cap, close


async def _read_up_to(reader: asyncio.StreamReader, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = await reader.read(n - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


async def _close(conn: _Conn) -> None:
    conn.writer.close()
    with contextlib.suppress(OSError):  # ssl.SSLError is an OSError
        await conn.writer.wait_closed()
