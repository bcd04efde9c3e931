"""Sync-lot latency through the whole running system (``make up`` first), via the proxy.

One lot with 5 image URLs (served by this script on loopback), languages en+ru+de, simulator at
zero latency: sequential p50/p99, then requests/s at concurrency 8. Optionally sets the
simulator's latency to 3 s per vision call and 1 s per text call and times one request.
Writes bench/results/sync.json. Numbers, not a timed test: this machine is noisy.
"""

from __future__ import annotations

import asyncio
import json
import platform
import statistics
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from gen_common import signing

BASE = "http://127.0.0.1:8080"
SIM_ADMIN = "http://127.0.0.1:18080/_sim/config"
KEY = b"dev-secret-key-for-testing-2024"
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 60
RESULTS = Path(__file__).resolve().parent / "results" / "sync.json"


class _Images(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self, body: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(JPEG)))
        self.end_headers()
        if body:
            self.wfile.write(JPEG)

    def do_HEAD(self) -> None:
        self._answer(False)

    def do_GET(self) -> None:
        self._answer(True)

    def log_message(self, format: str, *args: Any) -> None:
        return


def _body(images: str, n: int) -> bytes:
    lots = [
        {
            "lot_id": f"bench-{n}",
            "additional_info": "sedan",
            "images": [{"url": f"{images}/{n}/{i}.jpg"} for i in range(5)],
        }
    ]
    return json.dumps(
        {
            "signature": signing.sign_lots(KEY, lots),
            "version": "1.0.0",
            "languages": ["en", "ru", "de"],
            "lots": lots,
        }
    ).encode()


async def _one(client: httpx.AsyncClient, images: str, n: int) -> float:
    started = time.perf_counter()
    answer = await client.post(
        f"{BASE}/api/v1/generate-descriptions",
        content=_body(images, n),
        headers={"Content-Type": "application/json"},
    )
    elapsed = time.perf_counter() - started
    if answer.status_code != 200 or len(answer.json()["lots"][0]["descriptions"]) != 3:
        raise RuntimeError(f"unexpected answer {answer.status_code}: {answer.text[:200]}")
    return elapsed


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)


def _sim(config: dict[str, Any]) -> None:
    request = urllib.request.Request(
        SIM_ADMIN, data=json.dumps(config).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5):  # noqa: S310 - loopback only
        pass


async def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Images)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    images = f"http://127.0.0.1:{server.server_address[1]}"
    figures: dict[str, Any] = {}
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=16)) as client:
        for n in range(20):  # warm-up
            await _one(client, images, n)
        sequential = [await _one(client, images, 1000 + n) for n in range(200)]
        figures["sequential"] = {
            "requests": len(sequential),
            "p50_ms": _pct(sequential, 0.5),
            "p99_ms": _pct(sequential, 0.99),
        }
        counter = iter(range(10_000, 100_000))
        latencies: list[float] = []
        deadline = time.perf_counter() + 10

        async def worker() -> None:
            while time.perf_counter() < deadline:
                latencies.append(await _one(client, images, next(counter)))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(8)))
        seconds = time.perf_counter() - started
        figures["concurrency_8"] = {
            "requests": len(latencies),
            "requests_per_s": round(len(latencies) / seconds, 1),
            "p50_ms": _pct(latencies, 0.5),
            "p99_ms": _pct(latencies, 0.99),
        }
        _sim(
            {
                "latency": {
                    "kinds": {
                        "vision": {"dist": "fixed", "ms": 3000},
                        "text": {"dist": "fixed", "ms": 1000},
                    }
                }
            }
        )
        try:
            slow = [await _one(client, images, 200_000 + n) for n in range(3)]
        finally:
            _sim(
                {
                    "latency": {
                        "kinds": {
                            "vision": {"dist": "fixed", "ms": 0},
                            "text": {"dist": "fixed", "ms": 0},
                        }
                    }
                }
            )
        figures["sim_3s_vision_1s_text"] = {
            "seconds": [round(s, 2) for s in slow],
            "median_s": round(statistics.median(slow), 2),
        }
    server.shutdown()
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "sync lot through proxy, ingest, vision, translate (make up stack)",
                "machine": {
                    "python": platform.python_version(),
                    "cpus": 2,
                    "load_avg": list(__import__("os").getloadavg()),
                },
                "targets": {"p50_ms": 20, "p99_ms": 50, "requests_per_s_c8": 200, "slow_s": 4.2},
                "figures": figures,
            },
            indent=2,
        )
        + "\n"
    )
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
