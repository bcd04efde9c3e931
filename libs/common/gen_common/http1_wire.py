"""HTTP/1.1 message framing on asyncio streams: a request's head, an answer's head and body.

Shared by :mod:`gen_common.http1_conns` (the connections behind our httpx and httpx2 transports)
and the notifier's webhook client; each sends its own requests and decides what to do with the
answer. The errors below are the transports' own; each transport maps them to its library's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Iterable, Mapping
from typing import Any, NamedTuple, Protocol

MAX_HEAD = 64 * 1024
READ_CHUNK = 64 * 1024
NO_BODY_STATUS = frozenset({204, 304})


class WireError(Exception):
    """A request failed on the wire."""


class ProtocolError(WireError):
    """The peer's answer is not valid HTTP/1.1."""


class StaleConnection(WireError):
    """A kept-alive connection was closed by the peer before any answer."""


class ConnectTimedOut(WireError):
    """No connection within the connect timeout."""


class ConnectFailed(WireError):
    """The connection was refused, unreachable, or its TLS handshake failed."""


class ReadTimedOut(WireError):
    """No answer (or no more of its body) within the read or write timeout."""


class ReadFailed(WireError):
    """The connection broke during the exchange."""


class Head(NamedTuple):
    status: int
    reason: str
    fields: list[tuple[str, str]]  # names lower-cased, in order, repeats kept
    http10: bool  # an HTTP/1.0 answer: no keep-alive unless it asks for it


async def read_head(reader: asyncio.StreamReader) -> Head:
    """The head of the next final answer (interim 1xx answers are skipped)."""
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
        fields: list[tuple[str, str]] = []
        for line in lines[1:]:
            if line:
                name, sep, value = line.partition(":")
                if not sep:
                    raise ProtocolError("malformed header line")
                fields.append((name.strip().lower(), value.strip()))
        reason = parts[2] if len(parts) > 2 else ""
        return Head(status, reason, fields, http10=parts[0] == "HTTP/1.0")


async def body_chunks(
    reader: asyncio.StreamReader, headers: dict[str, str]
) -> AsyncGenerator[bytes, None]:
    """The body's bytes as they arrive: chunked, Content-Length, or delimited by close."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size_line = await reader.readuntil(b"\r\n")
            try:
                size = int(size_line.split(b";")[0].strip(), 16)
            except ValueError as exc:
                raise ProtocolError("bad chunk size") from exc
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":
                    pass  # trailer fields, ignored
                return
            while size:
                chunk = await reader.read(min(size, READ_CHUNK))
                if not chunk:
                    raise asyncio.IncompleteReadError(b"", size)
                size -= len(chunk)
                yield chunk
            await reader.readexactly(2)
        return
    if "content-length" in headers:
        try:
            left = int(headers["content-length"])
        except ValueError as exc:
            raise ProtocolError("bad content-length") from exc
        while left > 0:
            chunk = await reader.read(min(left, READ_CHUNK))
            if not chunk:
                raise asyncio.IncompleteReadError(b"", left)
            left -= len(chunk)
            yield chunk
        return
    while chunk := await reader.read(READ_CHUNK):
        yield chunk


def keeps_alive(headers: dict[str, str], *, http10: bool) -> bool:
    """Whether the connection may carry another request once this body was read in full."""
    framed = "content-length" in headers or "chunked" in headers.get("transfer-encoding", "")
    connection = headers.get("connection", "").lower()
    return framed and (connection == "keep-alive" if http10 else connection != "close")


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):  # ssl.SSLError is an OSError
        await writer.wait_closed()


class _URL(Protocol):
    @property
    def scheme(self) -> str: ...
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int | None: ...
    @property
    def raw_path(self) -> bytes: ...


class _Headers(Protocol):
    @property
    def raw(self) -> Iterable[tuple[bytes, bytes]]: ...


class Request(Protocol):
    """What we read of an ``httpx.Request`` or an ``httpx2.Request`` (same shape)."""

    @property
    def method(self) -> str: ...
    @property
    def url(self) -> _URL: ...
    @property
    def headers(self) -> _Headers: ...
    @property
    def extensions(self) -> Mapping[str, Any]: ...
    async def aread(self) -> bytes: ...


def request_head(request: Request, body: bytes) -> bytes:
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


def response_extensions(head: Head) -> dict[str, Any]:
    return {
        "http_version": b"HTTP/1.0" if head.http10 else b"HTTP/1.1",
        "reason_phrase": head.reason.encode("latin-1"),
    }
