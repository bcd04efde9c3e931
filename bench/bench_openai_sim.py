"""Throughput of the OpenAI simulator's POST /v1/responses on one core.

The simulator runs pinned to CPU 0 (taskset) with zero injected latency; wrk, pinned to the other
CPU, posts a realistic vision request (instructions of ~1,200 tokens, a strict json_schema and five
image URLs) with 32 connections for 10 s after a 2 s warm-up. Writes
bench/results/openai_sim.json.

    uv run python bench/bench_openai_sim.py [--seconds 10] [--connections 32]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import pathlib
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

from openai_sim.process import running

RESULTS = pathlib.Path(__file__).parent / "results" / "openai_sim.json"
SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["summary", "parts", "severity", "image_indexes", "odometer_visible"],
    "properties": {
        "summary": {"type": "string"},
        "parts": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "damage", "confidence"],
                "properties": {
                    "name": {"type": "string"},
                    "damage": {"type": "string", "enum": ["none", "scratch", "dent", "broken"]},
                    "confidence": {"type": "number"},
                },
            },
        },
        "severity": {"type": "string", "enum": ["none", "minor", "major"]},
        "image_indexes": {"type": "array", "items": {"type": "integer"}},
        "odometer_visible": {"type": ["boolean", "null"]},
    },
}


def request_body() -> dict[str, Any]:
    urls = [f"https://img.example/lot81234/{i}.jpg" for i in range(1, 6)]
    content: list[dict[str, Any]] = [{"type": "input_text", "text": "Lot 81234. Describe damage."}]
    content += [{"type": "input_image", "image_url": u, "detail": "low"} for u in urls]
    return {
        "model": "gpt-6-luna",
        "instructions": "You are a vehicle damage assessor. " * 140,
        "input": [{"role": "user", "content": content}],
        "reasoning": {"effort": "low"},
        "max_output_tokens": 4000,
        "text": {
            "format": {
                "type": "json_schema",
                "name": "damage_report",
                "strict": True,
                "schema": SCHEMA,
            }
        },
        "store": False,
        "prompt_cache_key": "vision-v3",
        "metadata": {"lot_id": "81234"},
    }


def lua_script(body: str) -> str:
    return (
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(body)}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        'wrk.headers["Authorization"] = "Bearer sk-bench"\n'
    )


def to_ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def run_wrk(url: str, script: str, *, seconds: int, connections: int, cpu: int) -> dict[str, Any]:
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script, url]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", str(cpu), *cmd]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    pct = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "requests_per_s": rps,
        "p50_ms": to_ms(pct["50"]),
        "p90_ms": to_ms(pct["90"]),
        "p99_ms": to_ms(pct["99"]),
        "non_2xx": int(errors.group(1)) if errors else 0,
        "wrk_output": out,
    }


def versions() -> dict[str, str]:
    names = ("openai-sim", "starlette", "uvicorn", "orjson", "uvloop", "httptools", "openai")
    found = {"python": sys.version.split()[0]}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    found["wrk"] = (wrk.stdout or wrk.stderr).splitlines()[0]
    return found


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for row in f:
            if row.startswith("model name"):
                cpu = row.split(":", 1)[1].strip()
                break
    return {"platform": platform.platform(), "cpu": cpu, "cpus": os.cpu_count()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--pure-python",
        action="store_true",
        help="run the server with h11 + asyncio instead of httptools + uvloop",
    )
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk not found: apt-get install -y wrk")
    multi = (os.cpu_count() or 1) > 1
    server_args = ("--http", "h11", "--loop", "asyncio") if args.pure_python else ()
    with (
        tempfile.TemporaryDirectory() as tmp,
        running(cpu=0 if multi else None, extra_args=server_args) as sim,
    ):
        script = pathlib.Path(tmp, "post.lua")
        script.write_text(lua_script(json.dumps(request_body())))
        url = sim.base_url + "/responses"
        run_wrk(url, str(script), seconds=2, connections=args.connections, cpu=1)  # warm-up
        sim.admin.reset()
        started = time.time()
        figures = run_wrk(
            url,
            str(script),
            seconds=args.seconds,
            connections=args.connections,
            cpu=1 if multi else 0,
        )
        stats = sim.admin.stats()["totals"]
    result = {
        "benchmark": "openai_sim POST /v1/responses, vision-like request, zero latency",
        "started_at": started,
        "server_args": list(server_args),
        "server_cpu_pinning": "taskset -c 0" if multi else "none (single CPU)",
        "load_generator": f"wrk -t2 -c{args.connections} -d{args.seconds}s (taskset -c 1)",
        "request_bytes": len(json.dumps(request_body())),
        "machine": machine(),
        "versions": versions(),
        "figures": {k: v for k, v in figures.items() if k != "wrk_output"},
        "server_counted": {"calls": stats["calls"], "errors": stats["errors"]},
        "target_requests_per_s": 1000,
        "wrk_output": figures["wrk_output"],
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["figures"], indent=2))
    print(f"server counted {stats['calls']} calls, {stats['errors']} errors -> {RESULTS}")


if __name__ == "__main__":
    main()
