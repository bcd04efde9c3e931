"""A 250 MB body against the real process (uvicorn): 413 before the body is all read, with and
without Content-Length, memory bounded by the limit, and the process keeps serving (S3)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from gen_common.settings import KafkaSettings

from tests.harness.processes import Child, child, eventually, settings_env

pytestmark = [pytest.mark.pg, pytest.mark.kafka, pytest.mark.e2e]

TOTAL = 250_000_000
CHUNK = 1_000_000
LIMIT = 200_000_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def ingest_process(
    migrated: str, kafka_settings: KafkaSettings, tmp_path: Path
) -> Iterator[tuple[Child, int]]:
    port = free_port()
    env = settings_env(
        DB__URL=migrated,
        KAFKA__BOOTSTRAP_SERVERS=kafka_settings.bootstrap_servers,
        KAFKA__TOPIC_PREFIX=kafka_settings.topic_prefix,
        INGEST__PORT=str(port),
        INGEST__SHARED_KEY="test-key",
    )
    with child("gen_ingest", env, tmp_path / "ingest.log") as proc:
        yield proc, port


async def healthy(port: int) -> bool:
    async with httpx.AsyncClient() as client:
        try:
            return (await client.get(f"http://127.0.0.1:{port}/health")).status_code == 200
        except httpx.TransportError:
            return False


async def send_large(port: int, *, content_length: bool) -> tuple[bytes, int]:
    """Stream up to TOTAL bytes; returns the status line and how many bytes were sent."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = [
        "POST /api/v1/generate-descriptions HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Content-Type: application/json",
        f"Content-Length: {TOTAL}" if content_length else "Transfer-Encoding: chunked",
    ]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
    sent = 0
    chunk = b"[" + b" " * (CHUNK - 1)

    # Without a length the server must read up to the limit; the client then waits for the
    # answer instead of racing the server's close (which would reset the connection).
    stop_at = 0 if content_length else LIMIT + 4 * CHUNK

    async def pump() -> None:
        nonlocal sent
        while sent < stop_at:
            frame = chunk if content_length else b"%x\r\n%s\r\n" % (len(chunk), chunk)
            writer.write(frame)
            await writer.drain()
            sent += len(chunk)

    pumping = asyncio.create_task(pump())
    try:
        status = await asyncio.wait_for(reader.readline(), 120)
    finally:
        pumping.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await pumping
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return status, sent


async def test_oversized_bodies_are_refused_while_streaming(
    ingest_process: tuple[Child, int],
) -> None:
    proc, port = ingest_process
    await eventually(lambda: healthy(port), timeout=60, interval=0.2)
    assert proc.proc is not None
    process = psutil.Process(proc.proc.pid)
    baseline = process.memory_info().rss
    peak = baseline

    async def sample() -> None:
        nonlocal peak
        while True:
            peak = max(peak, process.memory_info().rss)
            await asyncio.sleep(0.02)

    sampler = asyncio.create_task(sample())
    try:
        status, sent = await send_large(port, content_length=True)
        assert status.startswith(b"HTTP/1.1 413"), status
        assert sent == 0  # answered from the headers alone
        status, sent = await send_large(port, content_length=False)
        assert status.startswith(b"HTTP/1.1 413"), status
        assert LIMIT < sent < TOTAL
    finally:
        sampler.cancel()
    growth_mb = (peak - baseline) / 1e6
    assert growth_mb < LIMIT / 1e6 + 60, growth_mb  # bounded by the limit, one copy
    assert await healthy(port)
