"""Throughput of the vision stage, and how close its client-side throttle runs to an RPM limit.

Runs the real service (``gen_vision.main.run``: Kafka consumer, workers, reaper, outbox relay)
in-process against real Kafka and PostgreSQL, the OpenAI simulator as a subprocess and an image
host (tests/vision/conftest.py's app under uvicorn) as another subprocess. Every lot has two
images, so each lot is two HEAD checks through the SSRF-pinned client plus one Responses call.

1. ``throughput``: the simulator at zero latency; N LotSubmitted events published at once;
   lots/s from the first publish until every lot has its vision_results row.
2. ``rpm``: the simulator limits the model to ``--rpm`` requests per minute (its bucket starts
   full); after the initial burst drains the bucket, the sustained rate of successful calls is
   compared with the limit; no lot may fail.

    KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:19092 DB__URL=postgresql://gen@127.0.0.1:55432/<db> \\
        uv run python bench/bench_vision.py [--lots 2000] [--rpm 300] [--rpm-seconds 40]

Writes bench/results/vision.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import pathlib
import platform
import socket
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
from gen_common import kafka, migrate
from gen_common.events import LotSubmitted
from gen_common.image_check import ImageCheckOptions
from gen_common.settings import DbSettings, KafkaSettings, OpenAISettings
from gen_common.ssrf import SsrfSettings
from gen_vision import main
from gen_vision.settings import VisionOptions, VisionSettings
from openai_sim.process import RunningSim, running
from pydantic import SecretStr

REPO = pathlib.Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "vision.json"


def _serve_images(port_q: Any) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import Route

    sys.path.insert(0, str(REPO))
    from tests.vision.conftest import _image

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port_q.put(sock.getsockname()[1])
    app = Starlette(routes=[Route("/{path:path}", _image, methods=["GET", "HEAD"])])
    config = uvicorn.Config(app, log_level="error", lifespan="off", access_log=False)
    asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))


def settings_for(sim: RunningSim, *, workers: int) -> VisionSettings:
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    return VisionSettings(
        env="test",
        db=DbSettings(
            url=SecretStr(os.environ.get("DB__URL", "postgresql://gen@127.0.0.1:55432/gen")),
            pool_max=workers + 10,
        ),
        kafka=KafkaSettings(
            bootstrap_servers=os.environ.get("KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:19092"),
            topic_prefix=prefix,
            partitions=6,
        ),
        openai=OpenAISettings(
            api_key=SecretStr("sk-bench"), base_url=sim.base_url, max_retries=0, timeout_s=30
        ),
        vision=VisionOptions(
            workers=workers,
            idle_poll_s=0.5,
            images=ImageCheckOptions(ssrf=SsrfSettings(allow_cidrs=["127.0.0.0/8"])),
        ),
    )


async def run_lots(
    settings: VisionSettings, pool: asyncpg.Pool, image_base: str, n: int, sim: RunningSim
) -> dict[str, Any]:
    job = uuid.uuid4()
    images = [f"{image_base}/img/{job}/a.jpg", f"{image_base}/img/{job}/b.jpg"]
    events = [
        LotSubmitted(job_id=job, lot_seq=i, lot_id=i, images=images, languages=["en"], total_lots=n)
        for i in range(n)
    ]
    await kafka.ensure_topics(settings.kafka)
    ready = asyncio.Event()
    service = asyncio.create_task(main.run(settings, started=ready))
    samples: list[tuple[float, int]] = []
    try:
        await asyncio.wait_for(ready.wait(), 60)
        started = time.monotonic()
        cpu0, load0 = os.times(), os.getloadavg()[0]
        async with kafka.open_publisher(settings.kafka) as publisher:
            await publisher.publish_many(events)
        published = time.monotonic() - started
        while True:
            done = int(
                await pool.fetchval("SELECT count(*) FROM vision_results WHERE job_id = $1", job)
            )
            ok = int(sim.admin.stats()["totals"]["status"].get("200", 0))
            samples.append((time.monotonic() - started, ok))
            left = await pool.fetchval(
                """SELECT count(*) FROM vision_work
                   WHERE job_id = $1 AND status IN ('queued', 'running')""",
                job,
            )
            if int(left) == 0 and done + await failed(pool, job) >= n:
                break
            if service.done():
                service.result()
            await asyncio.sleep(0.25)
        elapsed = time.monotonic() - started
        cpu1, load1 = os.times(), os.getloadavg()[0]
    finally:
        service.cancel()
        await asyncio.gather(service, return_exceptions=True)
    return {
        "lots": n,
        "assessed": done,
        "failed": await failed(pool, job),
        "publish_s": round(published, 3),
        "elapsed_s": round(elapsed, 3),
        "lots_per_s": round(done / elapsed, 1),
        # CPU of this process (the whole vision service; the simulator, image host, Kafka and
        # PostgreSQL run elsewhere) per lot: the load-independent figure on a shared machine
        "service_cpu_ms_per_lot": round(
            1000 * (cpu1.user - cpu0.user + cpu1.system - cpu0.system) / max(done, 1), 2
        ),
        "load_avg_1m": [round(load0, 2), round(load1, 2)],
        "samples": samples,
    }


async def failed(pool: asyncpg.Pool, job: uuid.UUID) -> int:
    return int(
        await pool.fetchval(
            "SELECT count(*) FROM vision_work WHERE job_id = $1 AND status = 'failed'", job
        )
    )


async def bench(args: argparse.Namespace, image_base: str) -> dict[str, Any]:
    url = os.environ.get("DB__URL", "postgresql://gen@127.0.0.1:55432/gen")
    conn = await asyncpg.connect(url)
    try:
        await migrate.apply(conn)
    finally:
        await conn.close()
    pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
    result: dict[str, Any] = {}
    try:
        with running() as sim:
            settings = settings_for(sim, workers=args.workers)
            out = await run_lots(settings, pool, image_base, args.lots, sim)
            out.pop("samples")
            stats = sim.admin.stats()["totals"]
            result["throughput"] = {**out, "model_calls": stats["calls"], "workers": args.workers}
            print("throughput", json.dumps(result["throughput"]))
        limits = {"rate_limits": {"default": {"rpm": args.rpm, "tpm": 10_000_000_000}}}
        with running(limits) as sim:
            settings = settings_for(sim, workers=args.workers)
            n = args.rpm + int(args.rpm / 60 * args.rpm_seconds)
            out = await run_lots(settings, pool, image_base, n, sim)
            samples = out.pop("samples")
            # the sustained phase starts once the full bucket's burst is spent
            t0, ok0 = next(((t, ok) for t, ok in samples if ok >= args.rpm), samples[0])
            t1, ok1 = samples[-1]
            rate = (ok1 - ok0) / (t1 - t0) if t1 > t0 else 0.0
            stats = sim.admin.stats()["totals"]
            result["rpm"] = {
                **out,
                "rpm_limit": args.rpm,
                "limit_per_s": round(args.rpm / 60, 3),
                "sustained_window_s": round(t1 - t0, 1),
                "sustained_calls_per_s": round(rate, 3),
                "ratio_to_limit": round(rate / (args.rpm / 60), 3),
                "model_calls": stats["calls"],
                "http_429": stats["status"].get("429", 0),
            }
            print("rpm", json.dumps(result["rpm"]))
    finally:
        await pool.close()
    return result


def main_cli() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lots", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--rpm", type=int, default=300)
    parser.add_argument("--rpm-seconds", type=float, default=40.0)
    args = parser.parse_args()
    port_q: Any = mp.Queue()
    host = mp.Process(target=_serve_images, args=(port_q,), daemon=True)
    host.start()
    try:
        image_base = f"http://127.0.0.1:{port_q.get(timeout=20)}"
        result = asyncio.run(bench(args, image_base))
    finally:
        host.terminate()
        host.join(5)
    result["machine"] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "note": "2 cores shared with other engineers' test runs; Kafka/PostgreSQL shared servers",
    }
    result["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main_cli()
