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

import asyncio
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import time
from typing import Any


def _sibling(name: str) -> Any:
    """A sibling script of bench/ (not a package): bench_ingest's server and client helpers."""
    spec = importlib.util.spec_from_file_location(
        name, pathlib.Path(__file__).parent / f"{name}.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


_ingest = _sibling("bench_ingest")
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
    cli = _ingest.parser(__doc__.splitlines()[0] if __doc__ else "")
    cli.add_argument("--profile", default="")
    args = cli.parse_args()
    async with _ingest.ingest_server() as server:
        await _ingest.v2_submissions(
            server.port, server.requests(500, first=-500), args.connections
        )
        requests = server.requests(args.requests)
        spy = profiler(server.pid, args.profile, 4) if args.profile else None
        load_before = os.getloadavg()
        v2 = await _ingest.v2_submissions(server.port, requests, args.connections)
        v2["load_average_before"] = [round(x, 2) for x in load_before]
        v2["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
        print(json.dumps(v2), flush=True)
        if spy is not None:
            spy.wait(60)
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
