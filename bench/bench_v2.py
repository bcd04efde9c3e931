"""v2 single-lot async submissions (issue 4: >= 1,000/s with p99 <= 50 ms), split out of
bench_ingest.py so it can be run (and profiled) on its own.

Starts ``python -m gen_ingest`` pinned to CPU 0 against the real broker and PostgreSQL, sends
pre-signed ``POST /api/v2/jobs`` requests (one lot, five images) over keep-alive connections from
CPU 1, and reports submissions/s, p50/p99 and the load average. ``--profile FILE`` records the
ingest process with py-spy (``uvx py-spy``) during the measured run. Writes bench/results/v2.json.

    KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:19092 DB__URL=postgresql://gen@127.0.0.1:55432/gen \\
        uv run python bench/bench_v2.py [--requests 5000] [--connections 16] [--profile out.txt]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import pathlib
import subprocess
import tempfile
import time
import uuid
from typing import Any

import asyncpg
from gen_common import request_auth


def _sibling(name: str) -> Any:
    """A sibling script of bench/ (not a package): bench_ingest's server and client helpers."""
    spec = importlib.util.spec_from_file_location(
        name, pathlib.Path(__file__).parent / f"{name}.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_ingest = _sibling("bench_ingest")
free_port, signed_request, start_ingest = (
    _ingest.free_port,
    _ingest.signed_request,
    _ingest.start_ingest,
)
v2_submissions, wait_healthy = _ingest.v2_submissions, _ingest.wait_healthy
RESULTS = pathlib.Path(__file__).parent / "results" / "v2.json"


def profiler(pid: int, out: str, seconds: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            "uvx",
            "py-spy",
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(seconds),
            "--format",
            "raw" if out.endswith(".txt") else "speedscope",
            "--output",
            out,
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--profile", default="")
    args = parser.parse_args()
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
        warm = [signed_request(port, client_id, key_id, secret, -i - 1) for i in range(500)]
        await v2_submissions(port, warm, args.connections)
        requests = [
            signed_request(port, client_id, key_id, secret, i) for i in range(args.requests)
        ]
        spy = profiler(proc.pid, args.profile, 4) if args.profile else None
        load_before = os.getloadavg()
        v2 = await v2_submissions(port, requests, args.connections)
        v2["load_average_before"] = [round(x, 2) for x in load_before]
        v2["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
        print(json.dumps(v2), flush=True)
        if spy is not None:
            spy.wait(60)
    finally:
        proc.terminate()
        proc.wait(30)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "ingest v2 single-lot async submissions (one lot, five images)",
                "started_at": time.time(),
                "server": "python -m gen_ingest (one uvicorn process), taskset -c 0",
                "client": "raw asyncio sockets, keep-alive, pre-signed requests, CPU 1",
                "targets": {"submissions_per_s": 1000, "p99_ms": 50},
                "figures": v2,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    asyncio.run(main())
