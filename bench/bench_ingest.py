"""Ingest benchmarks against the real broker and PostgreSQL (numbers for the issue's targets).

1. v2 single-lot async submissions: pre-signed ``POST /api/v2/jobs`` requests (one lot, five
   images) sent over keep-alive connections by a raw-socket client; submissions/s, p50/p99.
2. A 50,000-lot v1 job with 20 image URLs per lot: time from the first byte sent to the 201, the
   ingest process's CPU seconds for it (comparable across machine loads), the load average, and
   its peak RSS growth (sampled every 10 ms). ``--job-only`` skips part 1 (bench_v2.py has it).

Ingest runs as ``python -m gen_ingest`` pinned to CPU 0 (taskset); this client runs on CPU 1.
Writes bench/results/ingest.json.

    KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:19092 DB__URL=postgresql://gen@127.0.0.1:55432/gen \\
        uv run python bench/bench_ingest.py [--requests 5000] [--connections 16]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import os
import pathlib
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import orjson
import psutil
from gen_common import request_auth
from gen_common.signing import sign_lots

RESULTS = pathlib.Path(__file__).parent / "results" / "ingest.json"
V1_KEY = "bench-shared-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_ingest(port: int, prefix: str, log: pathlib.Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if "__" not in k or k in ("DB__URL",)}
    env.update(
        {
            "DB__URL": os.environ.get("DB__URL", "postgresql://gen@127.0.0.1:55432/gen"),
            "KAFKA__BOOTSTRAP_SERVERS": os.environ.get(
                "KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:19092"
            ),
            "KAFKA__TOPIC_PREFIX": prefix,
            "INGEST__PORT": str(port),
            "INGEST__SHARED_KEY": V1_KEY,
            "INGEST__V1_RATE_PER_S": "1000000",
            "INGEST__V1_RATE_BURST": "1000000",
            "INGEST__DUPLICATE_WINDOW_S": "0",  # the same big body each run: no replays
            "LOG__LEVEL": "WARNING",
        }
    )
    with log.open("wb") as out:
        return subprocess.Popen(
            ["taskset", "-c", "0", sys.executable, "-m", "gen_ingest"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def wait_healthy(port: int) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(600):
            with contextlib.suppress(httpx.TransportError):
                if (await client.get(f"http://127.0.0.1:{port}/health")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise RuntimeError("ingest did not start")


def signed_request(port: int, client_id: str, key_id: str, secret: bytes, n: int) -> bytes:
    body = orjson.dumps(
        {
            "lots": [
                {
                    "lot_id": f"B-{n}",
                    "images": [f"https://img.example/{n}/{i}.jpg" for i in range(5)],
                }
            ],
            "languages": ["en", "ru", "de"],
        }
    )
    headers = request_auth.sign(
        secret, client_id=client_id, key_id=key_id, method="POST", path="/api/v2/jobs", body=body
    )
    lines = [
        "POST /api/v2/jobs HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def read_response(reader: asyncio.StreamReader) -> int:
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


async def v2_submissions(port: int, requests: list[bytes], connections: int) -> dict[str, Any]:
    queue = list(reversed(requests))
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while queue:
                raw = queue.pop()
                started = time.perf_counter()
                writer.write(raw)
                status = await read_response(reader)
                latencies.append(time.perf_counter() - started)
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(requests),
        "connections": connections,
        "seconds": round(elapsed, 3),
        "submissions_per_s": round(len(requests) / elapsed, 1),
        "p50_ms": round(1000 * statistics.median(latencies), 2),
        "p99_ms": round(1000 * latencies[int(0.99 * len(latencies)) - 1], 2),
        "max_ms": round(1000 * latencies[-1], 2),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
    }


def big_job_body(lots: int, images: int) -> bytes:
    items = [
        {
            "lot_id": f"lot-{n:05d}",
            "additional_info": "2019 sedan, front collision, airbags deployed",
            "images": [
                {"url": f"https://images.example-auction.com/lots/{n:05d}/photo-{i:02d}.jpg"}
                for i in range(images)
            ],
        }
        for n in range(lots)
    ]
    return orjson.dumps(
        {
            "signature": sign_lots(V1_KEY.encode(), items),
            "version": "1.0.0",
            "languages": ["en", "ru", "de"],
            "lots": items,
        }
    )


def big_job(port: int, pid: int, body: bytes) -> dict[str, Any]:
    process = psutil.Process(pid)
    baseline = process.memory_info().rss
    cpu_before = process.cpu_times()
    load_before = os.getloadavg()[0]
    peak = baseline
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, process.memory_info().rss)
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.perf_counter()
    response = httpx.post(
        f"http://127.0.0.1:{port}/api/v1/generate-descriptions",
        content=body,
        headers={"Content-Type": "application/json"},
        timeout=300,
    )
    elapsed = time.perf_counter() - started
    cpu_after = process.cpu_times()
    time.sleep(1.0)
    after = process.memory_info().rss
    done.set()
    sampler.join()
    return {
        "status": response.status_code,
        "answer": response.json(),
        "body_mb": round(len(body) / 1e6, 1),
        "accept_seconds": round(elapsed, 2),
        "ingest_cpu_seconds": round(
            cpu_after.user + cpu_after.system - cpu_before.user - cpu_before.system, 2
        ),
        "load_average_1m_before": round(load_before, 2),
        "rss_baseline_mb": round(baseline / 1e6, 1),
        "rss_peak_growth_mb": round((peak - baseline) / 1e6, 1),
        "rss_growth_after_1s_mb": round((after - baseline) / 1e6, 1),
    }


@dataclass(frozen=True)
class Server:
    """A running ``python -m gen_ingest`` and the v2 client this run signs with."""

    port: int
    pid: int
    client_id: str
    key_id: str
    secret: bytes

    def requests(self, count: int, *, first: int = 0) -> list[bytes]:
        return [
            signed_request(self.port, self.client_id, self.key_id, self.secret, first + i)
            for i in range(count)
        ]


def parser(description: str) -> argparse.ArgumentParser:
    """The options every ingest benchmark shares (the v2 submissions')."""
    result = argparse.ArgumentParser(description=description)
    result.add_argument("--requests", type=int, default=5000)
    result.add_argument("--connections", type=int, default=16)
    return result


@contextlib.asynccontextmanager
async def ingest_server() -> AsyncIterator[Server]:
    """This client on CPU 1, a fresh v2 client and key, ingest on CPU 0 until the block ends."""
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {1})
    port = free_port()
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    db_url = os.environ.get("DB__URL", "postgresql://gen@127.0.0.1:55432/gen")
    conn = await asyncpg.connect(db_url)
    client_id = f"bench-{uuid.uuid4().hex[:8]}"
    await request_auth.create_client(conn, client_id, rate_per_s=1_000_000, rate_burst=1_000_000)
    key_id, secret = await request_auth.create_key(conn, client_id)
    await conn.close()
    log = pathlib.Path(tempfile.mkdtemp()) / "ingest.log"
    proc = start_ingest(port, prefix, log)
    try:
        await wait_healthy(port)
        yield Server(port, proc.pid, client_id, key_id, secret)
    finally:
        proc.terminate()
        proc.wait(30)


async def main() -> None:
    cli = parser(__doc__.splitlines()[0] if __doc__ else "")
    cli.add_argument("--lots", type=int, default=50_000)
    cli.add_argument("--images", type=int, default=20)
    cli.add_argument("--job-only", action="store_true", help="skip the v2 submissions")
    args = cli.parse_args()
    async with ingest_server() as server:
        v2: dict[str, Any] = {"skipped": True}
        if not args.job_only:
            await v2_submissions(server.port, server.requests(300, first=-300), args.connections)
            v2 = await v2_submissions(server.port, server.requests(args.requests), args.connections)
            print("v2 single-lot:", v2, flush=True)
        body = big_job_body(args.lots, args.images)
        job = await asyncio.to_thread(big_job, server.port, server.pid, body)
        print("50k job:", {k: v for k, v in job.items() if k != "answer"}, flush=True)
    versions = {
        name: importlib.metadata.version(name)
        for name in ("fastapi", "starlette", "uvicorn", "orjson", "asyncpg", "aiokafka")
    }
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "ingest: v2 single-lot jobs; one 50,000-lot v1 job, 20 images per lot",
                "started_at": time.time(),
                "server": "python -m gen_ingest (one uvicorn process), taskset -c 0",
                "client": "raw asyncio sockets, keep-alive, pre-signed requests, CPU 1",
                "machine": {
                    "platform": platform.platform(),
                    "cpus": os.cpu_count(),
                    "load_average_1m_at_end": round(os.getloadavg()[0], 2),
                    "note": "shared by several engineers' test runs; figures vary run to run",
                },
                "versions": {"python": platform.python_version(), **versions},
                "figures": {"v2_single_lot": v2, "job_50k": job},
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    asyncio.run(main())
