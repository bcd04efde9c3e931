"""A TCP fault proxy on loopback with toxiproxy-style toggles (reliability.md §6.2), for PostgreSQL.

``with FaultProxy("127.0.0.1", 5432) as proxy:`` listens on ``proxy.port`` and forwards every
connection to the upstream. It runs its own event loop in a daemon thread, so a test that blocks
its loop (a synchronous admin call) never stalls the traffic. The toggles are plain attributes,
read for every chunk, so a test flips them at run time:

- ``latency_s`` — each chunk is held ``latency_s`` after it arrived (FIFO per direction, so it is
  latency, not a bandwidth cap); ``latency_direction`` is ``"downstream"`` (server → client, as
  toxiproxy's default), ``"upstream"`` or ``"both"``;
- ``reset_peer`` — the probability that a chunk (either direction) is dropped and both sides get a
  TCP RST (``SO_LINGER`` 0, then close), as toxiproxy's ``reset_peer``;
- ``paused`` — data stops flowing (held, not lost) until it is cleared.

:meth:`url` rewrites a ``postgresql://`` URL to go through the proxy. For PostgreSQL the proxy also
follows the protocol's ReadyForQuery messages, so every reset is counted by what the connection was
doing: ``idle`` (no statement in flight, no open transaction), ``in_transaction`` (a transaction
was open) or ``in_statement`` (a statement sent outside a transaction had no answer yet).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

Direction = Literal["downstream", "upstream", "both"]
CHUNK = 65_536
_NEGOTIATIONS = {80877103, 80877104}  # SSLRequest, GSSENCRequest: answered with one byte


@dataclass
class _PgState:
    """What one PostgreSQL connection is doing, from the bytes that pass."""

    tx: str = "I"  # the last ReadyForQuery status: I idle, T in a transaction, E failed one
    awaiting: int = 0  # client messages sent since the last ReadyForQuery
    single_bytes: int = 0  # one-byte answers to SSL/GSS negotiation still to come
    started: bool = False  # the client's startup packet has passed
    buffer: bytearray = field(default_factory=bytearray)

    def upstream(self, data: bytes) -> None:
        if not self.started and len(data) >= 8:
            (code,) = struct.unpack("!I", data[4:8])
            if code in _NEGOTIATIONS:
                self.single_bytes += 1
                return
            self.started = True
            return
        self.awaiting += 1

    def downstream(self, data: bytes) -> None:
        self.buffer += data
        while self.buffer:
            if self.single_bytes:
                del self.buffer[:1]
                self.single_bytes -= 1
                continue
            if len(self.buffer) < 5:
                return
            kind = self.buffer[0]
            (length,) = struct.unpack("!I", self.buffer[1:5])
            if len(self.buffer) < 1 + length:
                return
            if kind == ord("Z") and length == 5:
                self.tx = chr(self.buffer[5])
                self.awaiting = 0
            del self.buffer[: 1 + length]

    def doing(self) -> str:
        if self.tx in ("T", "E"):
            return "in_transaction"
        return "in_statement" if self.awaiting else "idle"


@dataclass
class ProxyStats:
    connections: int = 0
    chunks: int = 0
    bytes: int = 0
    resets: Counter[str] = field(default_factory=Counter)  # by what the connection was doing
    delayed_chunks: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "connections": self.connections,
            "chunks": self.chunks,
            "bytes": self.bytes,
            "delayed_chunks": self.delayed_chunks,
            "resets": dict(self.resets),
        }


class _Reset(Exception):
    pass


class FaultProxy:
    def __init__(
        self, upstream_host: str, upstream_port: int, *, host: str = "127.0.0.1", seed: int = 0
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.host = host
        self.port = 0
        self.latency_s = 0.0
        self.latency_direction: Direction = "downstream"
        self.reset_peer = 0.0
        self.paused = False
        self.stats = ProxyStats()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()

    # -- configuration ---------------------------------------------------------------------

    @classmethod
    def for_url(cls, url: str, *, seed: int = 0) -> FaultProxy:
        parts = urlsplit(url)
        return cls(parts.hostname or "127.0.0.1", parts.port or 5432, seed=seed)

    def url(self, url: str) -> str:
        """``url`` with its host and port replaced by the proxy's."""
        parts = urlsplit(url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@{self.host}:{self.port}" if userinfo else f"{self.host}:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def clear(self) -> None:
        """Every toxic off."""
        self.latency_s = 0.0
        self.reset_peer = 0.0
        self.paused = False

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return self.stats.as_dict()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._accept, self.host, self.port, limit=CHUNK)
                )
                self.port = self._server.sockets[0].getsockname()[1]
            except OSError as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._shutdown())
                loop.close()

        self._thread = threading.Thread(target=serve, name="fault-proxy", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop = self._thread = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._conns):
            task.cancel()
        await asyncio.gather(*self._conns, return_exceptions=True)

    # -- forwarding ------------------------------------------------------------------------

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            await self._connection(client_r, client_w)
        except asyncio.CancelledError:
            pass  # the proxy is stopping; the connection's sockets are already aborted
        finally:
            self._conns.discard(task)

    async def _connection(
        self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter
    ) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(*self.upstream, limit=CHUNK)
        except OSError:
            _abort(client_w, rst=True)
            return
        with self._lock:
            self.stats.connections += 1
        pg = _PgState()
        pumps = [
            asyncio.create_task(self._pump(client_r, server_w, "upstream", pg)),
            asyncio.create_task(self._pump(server_r, client_w, "downstream", pg)),
        ]
        try:
            done, _ = await asyncio.wait(pumps, return_when=asyncio.FIRST_EXCEPTION)
            reset = any(not t.cancelled() and isinstance(t.exception(), _Reset) for t in done)
            if reset or any(not t.cancelled() and t.exception() for t in done):
                for writer in (client_w, server_w):
                    _abort(writer, rst=reset)
            await asyncio.gather(*pumps, return_exceptions=True)
        finally:
            for task in pumps:
                task.cancel()
            for writer in (client_w, server_w):
                _abort(writer, rst=False)

    def _delays(self, direction: str) -> bool:
        return self.latency_s > 0 and self.latency_direction in (direction, "both")

    async def _pump(
        self,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        direction: str,
        pg: _PgState,
    ) -> None:
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        writer = asyncio.create_task(self._write(queue, dst))
        try:
            while True:
                data = await src.read(CHUNK)
                if not data:
                    queue.put_nowait(None)
                    await writer
                    return
                with self._lock:
                    self.stats.chunks += 1
                    self.stats.bytes += len(data)
                    if self.reset_peer > 0 and self._rng.random() < self.reset_peer:
                        self.stats.resets[pg.doing()] += 1
                        raise _Reset
                (pg.upstream if direction == "upstream" else pg.downstream)(data)
                release = time.monotonic()
                if self._delays(direction):
                    release += self.latency_s
                    with self._lock:
                        self.stats.delayed_chunks += 1
                queue.put_nowait((release, data))
                if writer.done():
                    writer.result()
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError, ConnectionError):
                await writer

    async def _write(
        self, queue: asyncio.Queue[tuple[float, bytes] | None], dst: asyncio.StreamWriter
    ) -> None:
        while (item := await queue.get()) is not None:
            release, data = item
            while self.paused:
                await asyncio.sleep(0.05)
            if (wait := release - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            dst.write(data)
            await dst.drain()
        with contextlib.suppress(OSError, RuntimeError):
            if dst.can_write_eof():
                dst.write_eof()


def _abort(writer: asyncio.StreamWriter, *, rst: bool) -> None:
    sock = writer.get_extra_info("socket")
    if rst and sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
