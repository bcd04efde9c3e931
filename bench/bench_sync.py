"""Sync-lot latency through the whole pipeline, started by this script (no ``make up``).

Starts its own processes: ``python -m gen_ingest``, ``gen_vision``, ``gen_translate`` and
``gen_notifier`` against the real broker (a fresh topic prefix) and real PostgreSQL (``DB__URL``,
migrated here), the OpenAI simulator at zero latency and an image host on loopback. One lot with
5 image URLs, languages en+ru+de: sequential p50/p99, then requests/s at concurrency 8, then the
simulator at 3 s per vision call and 1 s per text call (one request). For the sequential requests
it also reads the stage timestamps the pipeline writes (jobs, vision_work, vision_calls,
vision_results, translate_work, translate_results, lots) and prints where the time goes.
Writes bench/results/sync.json. Numbers, not a timed test: this machine is noisy.

    KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:19092 DB__URL=postgresql://gen@127.0.0.1:55432/gen \
        uv run python bench/bench_sync.py [--sequential 200] [--seconds 10] [--env K=V ...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
from gen_common import kafka, migrate
from gen_common.settings import KafkaSettings
from gen_common.signing import sign_lots
from gen_devstack import kafka_local
from openai_sim.process import RunningSim, running

KEY = b"bench-sync-shared-key"
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 60
RESULTS = Path(__file__).resolve().parent / "results" / "sync.json"
SERVICES = ("gen_vision", "gen_translate", "gen_notifier")
ZERO = {
    "latency": {"kinds": {"vision": {"dist": "fixed", "ms": 0}, "text": {"dist": "fixed", "ms": 0}}}
}
SLOW = {
    "latency": {
        "kinds": {"vision": {"dist": "fixed", "ms": 3000}, "text": {"dist": "fixed", "ms": 1000}}
    }
}


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


def _serve_images(port_q: Any) -> None:
    """The image host, in its own process: in the driver's it shared the GIL with the load
    generator, and every image check waited on the client's own work."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Images)
    port_q.put(server.server_address[1])
    server.serve_forever()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _body(images: str, n: int, tag: str) -> bytes:
    lots = [
        {
            "lot_id": f"bench-{RUN}-{tag}-{n}",
            "additional_info": "sedan",
            "images": [{"url": f"{images}/{tag}/{n}/{i}.jpg"} for i in range(5)],
        }
    ]
    return json.dumps(
        {
            "signature": sign_lots(KEY, lots),
            "version": "1.0.0",
            "languages": ["en", "ru", "de"],
            "lots": lots,
        }
    ).encode()


RUN = uuid.uuid4().hex[:8]  # lot ids of this run: bench-RUN-tag-n
WALL: dict[str, tuple[float, float]] = {}  # lot id -> (sent, answered), wall clock


async def _one(client: httpx.AsyncClient, base: str, images: str, n: int, tag: str) -> float:
    sent = time.time()
    started = time.perf_counter()
    answer = await client.post(
        f"{base}/api/v1/generate-descriptions",
        content=_body(images, n, tag),
        headers={"Content-Type": "application/json"},
    )
    elapsed = time.perf_counter() - started
    WALL[f"bench-{RUN}-{tag}-{n}"] = (sent, sent + elapsed)
    if answer.status_code != 200 or len(answer.json()["lots"][0]["descriptions"]) != 3:
        raise RuntimeError(f"unexpected answer {answer.status_code}: {answer.text[:200]}")
    return elapsed


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """User + system CPU seconds used so far by each named process."""
    used = {}
    for name, pid in pids.items():
        times = psutil.Process(pid).cpu_times()
        used[name] = times.user + times.system
    return used


@contextlib.contextmanager
def processes(env: dict[str, str], logs: Path, ingest_port: int) -> Iterator[dict[str, int]]:
    children: list[subprocess.Popen[bytes]] = []
    try:
        for module in (*SERVICES, "gen_ingest"):
            with (logs / f"{module}.log").open("wb") as out:
                children.append(
                    subprocess.Popen(
                        [sys.executable, "-m", module],
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                    )
                )
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"http://127.0.0.1:{ingest_port}/health").status_code == 200:
                    break
            if time.monotonic() > deadline or any(c.poll() is not None for c in children):
                raise RuntimeError(f"a process did not start; logs in {logs}")
            time.sleep(0.1)
        yield {module: c.pid for module, c in zip((*SERVICES, "gen_ingest"), children, strict=True)}
    finally:
        for child in children:
            child.terminate()
        for child in children:
            try:
                child.wait(20)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def environment(
    db_url: str, bootstrap: str, prefix: str, sim: RunningSim, port: int, extra: list[str]
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if "__" not in k}
    env.update(
        {
            "DB__URL": db_url,
            "KAFKA__BOOTSTRAP_SERVERS": bootstrap,
            "KAFKA__TOPIC_PREFIX": prefix,
            "OPENAI__BASE_URL": sim.base_url,
            "OPENAI__API_KEY": "sk-bench",
            "VISION__IMAGES": '{"ssrf": {"allow_cidrs": ["127.0.0.0/8"]}}',
            "NOTIFIER__SHARED_KEY": KEY.decode(),
            "NOTIFIER__HTTP_PORT": str(free_port()),
            "NOTIFIER__SSRF__ALLOW_CIDRS": '["127.0.0.1/32"]',
            "INGEST__PORT": str(port),
            "INGEST__SHARED_KEY": KEY.decode(),
            "INGEST__V1_RATE_PER_S": "1000000",
            "INGEST__V1_RATE_BURST": "1000000",
            "LOG__LEVEL": "WARNING",
        }
    )
    for item in extra:
        name, _, value = item.partition("=")
        env[name] = value
    return env


STAGES = """
WITH l AS (
    SELECT j.job_id, j.created_at AS t0, l.completed_at AS done, l.lot_id #>> '{}' AS lot_id
    FROM jobs j JOIN lots l USING (job_id)
    WHERE j.job_id = ANY($1::uuid[])
)
SELECT
    l.lot_id, extract(epoch FROM l.t0)::float8 AS t0_epoch,
    extract(epoch FROM tl.translated_at)::float8 AS tr_epoch,
    extract(epoch FROM vw.created_at - l.t0) * 1000 AS to_vision_consumer,
    extract(epoch FROM vc.started_at - vw.created_at) * 1000 AS claim_and_images,
    extract(epoch FROM vc.finished_at - vc.started_at) * 1000 AS vision_call,
    extract(epoch FROM vr.created_at - vc.finished_at) * 1000 AS vision_store,
    extract(epoch FROM tw.created_at - vr.created_at) * 1000 AS to_translate_consumer,
    extract(epoch FROM tr.last - tw.created_at) * 1000 AS translations,
    extract(epoch FROM l.done - tr.last) * 1000 AS to_notifier_done
FROM l
JOIN vision_work vw USING (job_id)
JOIN LATERAL (SELECT min(started_at) AS started_at, max(finished_at) AS finished_at
              FROM vision_calls c WHERE c.job_id = l.job_id) vc ON true
JOIN vision_results vr USING (job_id)
JOIN LATERAL (SELECT min(created_at) AS created_at FROM translate_work w
              WHERE w.job_id = l.job_id) tw ON true
JOIN LATERAL (SELECT max(created_at) AS last FROM translate_results r
              WHERE r.job_id = l.job_id) tr ON true
JOIN translate_lots tl USING (job_id)
"""


async def stages(db_url: str, job_ids: list[uuid.UUID]) -> dict[str, float]:
    """Median milliseconds per stage, from the timestamps the pipeline writes (now() of each
    transaction, so a stage includes the time its transaction took to start)."""
    conn = await asyncpg.connect(db_url)
    try:
        rows = await conn.fetch(STAGES, job_ids)
    except asyncpg.PostgresError as exc:
        return {"error": str(exc)}  # type: ignore[dict-item]
    finally:
        await conn.close()
    if not rows:
        return {}
    table = [
        {
            "client_to_jobs_row": 1000 * (r["t0_epoch"] - WALL[r["lot_id"]][0]),
            **{k: float(r[k] or 0) for k in list(r.keys())[3:]},
            "translated_to_answer": 1000 * (WALL[r["lot_id"]][1] - r["tr_epoch"]),
        }
        for r in rows
        if r["lot_id"] in WALL
    ]
    return {k: round(statistics.median(t[k] for t in table), 2) for k in table[0]}


async def job_ids_of(db_url: str, tag: str) -> list[uuid.UUID]:
    conn = await asyncpg.connect(db_url)
    try:
        rows = await conn.fetch(
            "SELECT job_id FROM lots WHERE lot_id #>> '{}' LIKE $1", f"bench-{RUN}-{tag}-%"
        )
    finally:
        await conn.close()
    return [r["job_id"] for r in rows]


async def measure(
    base: str, images: str, args: argparse.Namespace, sim: RunningSim, pids: dict[str, int]
) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=16)) as client:
        for n in range(20):  # warm-up
            await _one(client, base, images, n, "warm")
        load = os.getloadavg()
        sequential = [await _one(client, base, images, n, "seq") for n in range(args.sequential)]
        figures["sequential"] = {
            "requests": len(sequential),
            "p50_ms": _pct(sequential, 0.5),
            "p99_ms": _pct(sequential, 0.99),
            "load_avg_before": [round(x, 2) for x in load],
        }
        counter = iter(range(1_000_000))
        latencies: list[float] = []
        deadline = time.perf_counter() + args.seconds

        async def worker() -> None:
            while time.perf_counter() < deadline:
                latencies.append(await _one(client, base, images, next(counter), "c8"))

        load = os.getloadavg()
        cpu = cpu_seconds(pids)
        spies = [
            subprocess.Popen(
                [
                    "uvx",
                    "py-spy",
                    "record",
                    "--pid",
                    str(pid),
                    "--duration",
                    str(int(args.seconds)),
                    "--format",
                    "raw",
                    "--output",
                    f"{args.profile}-{name}.txt",
                    "--nonblocking",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for name, pid in pids.items()
            if args.profile
        ]
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(8)))
        seconds = time.perf_counter() - started
        cpu_after = cpu_seconds(pids)
        for spy in spies:
            spy.wait(60)
        figures["concurrency_8"] = {
            "requests": len(latencies),
            "requests_per_s": round(len(latencies) / seconds, 1),
            "p50_ms": _pct(latencies, 0.5),
            "p99_ms": _pct(latencies, 0.99),
            "load_avg_before": [round(x, 2) for x in load],
            "load_avg_after": [round(x, 2) for x in os.getloadavg()],
            "cpu_ms_per_request": {
                name: round(1000 * (cpu_after[name] - cpu[name]) / max(len(latencies), 1), 2)
                for name in cpu
            },
        }
        if args.slow:
            sim.admin.config(SLOW)
            try:
                slow = [await _one(client, base, images, n, "slow") for n in range(3)]
            finally:
                sim.admin.config(ZERO)
            figures["sim_3s_vision_1s_text"] = {
                "seconds": [round(s, 2) for s in slow],
                "median_s": round(statistics.median(slow), 2),
            }
    return figures


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sequential", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--no-slow", dest="slow", action="store_false")
    parser.add_argument("--profile", default="", help="py-spy raw profiles PREFIX-<process>.txt")
    parser.add_argument("--own-kafka", action="store_true", help="start a private 1-node broker")
    parser.add_argument("--env", action="append", default=[], help="extra KEY=VALUE for all")
    args = parser.parse_args()
    db_url = os.environ.get("DB__URL", "postgresql://gen@127.0.0.1:55432/gen")
    bootstrap = os.environ.get("KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:19092")
    cluster = None
    if args.own_kafka:
        cluster = kafka_local.Cluster(Path(tempfile.mkdtemp(prefix="bench-sync-kafka-")))
        cluster.start()
        bootstrap = cluster.bootstrap_servers
    try:
        await _run(args, db_url, bootstrap)
    finally:
        if cluster is not None:
            cluster.stop()


async def _run(args: argparse.Namespace, db_url: str, bootstrap: str) -> None:
    prefix = f"bsync{uuid.uuid4().hex[:8]}."
    pool = await asyncpg.create_pool(db_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            await migrate.apply(conn)
    finally:
        await pool.close()
    await kafka.ensure_topics(KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=prefix))
    port_q: Any = mp.Queue()
    host = mp.Process(target=_serve_images, args=(port_q,), daemon=True)
    host.start()
    images = f"http://127.0.0.1:{port_q.get(timeout=20)}"
    port = free_port()
    logs = Path(tempfile.mkdtemp(prefix="bench-sync-"))
    with running(ZERO) as sim:
        env = environment(db_url, bootstrap, prefix, sim, port, args.env)
        with processes(env, logs, port) as pids:
            pids["openai_sim"] = sim.process.pid
            pids["image_host"] = host.pid or 0
            figures = await measure(f"http://127.0.0.1:{port}", images, args, sim, pids)
    host.terminate()
    host.join(5)
    print(json.dumps(figures), flush=True)
    figures["stages_ms_median_sequential"] = await stages(db_url, await job_ids_of(db_url, "seq"))
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "sync lot: ingest, vision, translate, notifier processes started by "
                "bench_sync.py; real Kafka and PostgreSQL; simulator at zero latency",
                "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
                "extra_env": args.env,
                "kafka": "private 1-node broker" if args.own_kafka else "shared dev broker",
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
