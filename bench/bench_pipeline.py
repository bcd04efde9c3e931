"""End-to-end throughput: lots.submitted -> vision -> lots.assessed -> translate -> lots.translated.

Real Apache Kafka and PostgreSQL, real ``python -m gen_vision`` and ``python -m gen_translate``
processes, the OpenAI simulator at zero latency (subprocess) and a local image host (subprocess,
tests/vision/conftest.py's app under uvicorn). Every lot has two images and the languages
``en, ru`` (one translation). A warm-up job goes through first (consumer groups joined, pools
and connections warm); then N LotSubmitted events are published and the clock runs from the first
publish until the last lot's LotTranslated (or LotFailed) was read from Kafka.

Reported: lots/s; CPU ms per lot of every process we can see (vision, translate, simulator,
image host, this driver, the PostgreSQL backends connected to the bench database, and the Kafka
broker's JVM, which other engineers share); the 1-minute load average before and after.

    KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:19092 DB__URL=postgresql://gen@127.0.0.1:55432/<db> \\
        uv run python bench/bench_pipeline.py [-n 2000] [--vision-workers 32] \\
        [--translate-workers 16] [--runs 1] [--profile-dir DIR] [--env VISION__X=1] \
        [--before-root DIR] [--code-root DIR]

``--before-root DIR`` runs an older checkout (``git archive <commit> services/vision
services/translate libs/common | tar -x -C DIR``) before each run, alternating, so before/after
figures see the same machine load. ``--profile-dir`` runs both services under cProfile with a
CPU clock (bench/cpu_profile.py). Writes bench/results/pipeline.json (``--out`` elsewhere).
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
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
from gen_common import kafka, migrate
from gen_common.events import (
    LOTS_FAILED,
    LOTS_TRANSLATED,
    Event,
    LotFailed,
    LotSubmitted,
    LotTranslated,
)
from gen_common.settings import KafkaSettings
from openai_sim.process import running

REPO = pathlib.Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "pipeline.json"
WARMUP_LOTS = 50
TICK = os.sysconf("SC_CLK_TCK")


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


def cpu_s(pid: int) -> float:
    """user + system CPU seconds of a process so far (0 if it is gone)."""
    try:
        fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def pids_matching(needle: str) -> list[int]:
    out = []
    for proc in pathlib.Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in cmd:
            out.append(int(proc.name))
    return out


def lots_of(job: uuid.UUID, n: int, image_base: str) -> list[LotSubmitted]:
    images = [f"{image_base}/img/{job}/a.jpg", f"{image_base}/img/{job}/b.jpg"]
    return [
        LotSubmitted(
            job_id=job,
            lot_seq=i,
            lot_id=f"P{i}",
            images=images,
            languages=["en", "ru"],
            total_lots=n,
        )
        for i in range(n)
    ]


async def prepare_db(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await migrate.apply(conn)
    finally:
        await conn.close()


async def measure(
    settings: KafkaSettings, image_base: str, lots: int, procs: dict[str, list[int]], db: str
) -> dict[str, Any]:
    warmup, job = uuid.uuid4(), uuid.uuid4()
    wanted = {warmup: WARMUP_LOTS, job: lots}
    seen: dict[uuid.UUID, dict[int, str]] = {warmup: {}, job: {}}
    done = {warmup: asyncio.Event(), job: asyncio.Event()}
    started = asyncio.Event()

    def keep(event: Event) -> None:
        if isinstance(event, LotTranslated | LotFailed) and event.job_id in seen:
            outcome = "translated" if isinstance(event, LotTranslated) else "failed"
            if isinstance(event, LotTranslated):
                assert [d.language for d in event.descriptions] == ["en", "ru"]
            seen[event.job_id][event.lot_seq] = outcome
            if len(seen[event.job_id]) == wanted[event.job_id]:
                done[event.job_id].set()

    tail = asyncio.create_task(
        kafka.tail(
            settings,
            topics=[LOTS_TRANSLATED, LOTS_FAILED],
            models={LOTS_TRANSLATED: LotTranslated, LOTS_FAILED: LotFailed},
            callback=keep,
            started=started,
        )
    )
    try:
        await asyncio.wait_for(started.wait(), 60)
        batch = lots_of(job, lots, image_base)
        async with kafka.open_publisher(settings) as publisher:
            await publisher.publish_many(lots_of(warmup, WARMUP_LOTS, image_base))
            await asyncio.wait_for(done[warmup].wait(), 180)
            procs = {**procs, "postgres_backends": pids_matching(f"postgres: gen {db} ")}
            procs["driver"] = [os.getpid()]
            cpu0 = {name: sum(cpu_s(p) for p in pids) for name, pids in procs.items()}
            load0 = os.getloadavg()[0]
            t0 = time.perf_counter()
            await publisher.publish_many(batch)
            published = time.perf_counter() - t0
            await asyncio.wait_for(done[job].wait(), 900)
            seconds = time.perf_counter() - t0
            cpu1 = {name: sum(cpu_s(p) for p in pids) for name, pids in procs.items()}
            load1 = os.getloadavg()[0]
    finally:
        tail.cancel()
        await asyncio.gather(tail, return_exceptions=True)
    outcomes = list(seen[job].values())
    cpu_ms = {name: round(1000 * (cpu1[name] - cpu0[name]) / lots, 2) for name in procs}
    ours = sum(v for k, v in cpu_ms.items() if k != "kafka_broker_shared")
    return {
        "lots": lots,
        "translated": outcomes.count("translated"),
        "failed": outcomes.count("failed"),
        "publish_s": round(published, 3),
        "seconds": round(seconds, 3),
        "lots_per_s": round(lots / seconds, 1),
        "cpu_ms_per_lot": cpu_ms,
        "cpu_ms_per_lot_without_kafka": round(ours, 2),
        "postgres_backends": len(procs["postgres_backends"]),
        "load_avg_1m": [round(load0, 2), round(load1, 2)],
    }


@contextmanager
def service(
    module: str, env: dict[str, str], tmp: str, profile_dir: str | None
) -> Iterator[subprocess.Popen[bytes]]:
    log = pathlib.Path(profile_dir or tmp) / f"{module}.log"
    cmd = [sys.executable, "-m", module]
    if profile_dir:
        out = pathlib.Path(profile_dir) / f"{module}.prof"
        profiler = pathlib.Path(__file__).with_name("cpu_profile.py")
        cmd = [sys.executable, str(profiler), str(out), module]
    with log.open("wb") as sink:
        proc = subprocess.Popen(cmd, env=env, stdout=sink, stderr=sink)
    try:
        yield proc
    finally:
        proc.terminate()  # SIGTERM: graceful, so cProfile writes its file
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        if proc.returncode not in (0, -15):
            sys.stderr.write(log.read_text()[-3000:])


def one_run(
    args: argparse.Namespace, image_base: str, host_pid: int, code_root: str | None
) -> dict[str, Any]:
    url = os.environ.get("DB__URL", "postgresql://gen@127.0.0.1:55432/gen")
    db = urllib.parse.urlsplit(url).path.lstrip("/")  # the URL may name a socket: ?host=/dir
    bootstrap = os.environ.get("KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:19092")
    prefix = f"pipe{uuid.uuid4().hex[:8]}."
    settings = KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=prefix, partitions=6)
    asyncio.run(prepare_db(url))
    asyncio.run(kafka.ensure_topics(settings))
    with running() as sim, tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if "__" not in k}
        env.update(
            {
                "ENV": "test",
                "KAFKA__BOOTSTRAP_SERVERS": bootstrap,
                "KAFKA__TOPIC_PREFIX": prefix,
                "KAFKA__PARTITIONS": "6",
                "DB__URL": url,
                "OPENAI__BASE_URL": sim.base_url,
                "OPENAI__API_KEY": "sk-bench",
                "OPENAI__MAX_RETRIES": "0",
                "LOG__LEVEL": "WARNING",
                "VISION__WORKERS": str(args.vision_workers),
                "VISION__IMAGES__SSRF__ALLOW_CIDRS": '["127.0.0.0/8"]',
                "TRANSLATE__WORKERS": str(args.translate_workers),
            }
        )
        for setting in args.env:  # e.g. VISION__IMAGES__CONCURRENCY=16
            name, _, value = setting.partition("=")
            env[name] = value
        if code_root:  # e.g. an exported older commit, for before/after figures
            root = pathlib.Path(code_root).resolve()
            tree = ["services/vision", "services/translate", "libs/common"]
            env["PYTHONPATH"] = os.pathsep.join(str(root / part) for part in tree)
        vision_env = {**env, "DB__POOL_MAX": str(args.vision_workers + 10)}
        translate_env = {**env, "DB__POOL_MAX": str(args.translate_workers + 8)}
        with (
            service("gen_vision", vision_env, tmp, args.profile_dir) as vision,
            service("gen_translate", translate_env, tmp, args.profile_dir) as translate,
        ):
            procs = {
                "vision": [vision.pid],
                "translate": [translate.pid],
                "openai_sim": [sim.process.pid],
                "image_host": [host_pid],
                "kafka_broker_shared": [
                    p for p in pids_matching("kafka.Kafka") if p in pids_matching("/work/devinfra/")
                ],
            }
            result = asyncio.run(measure(settings, image_base, args.lots, procs, db))
        stats = sim.admin.stats()["totals"]
        result["model_calls"] = stats["calls"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--lots", type=int, default=2000)
    parser.add_argument("--vision-workers", type=int, default=32)
    parser.add_argument("--translate-workers", type=int, default=16)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--profile-dir", default=None, help="run both services under cProfile")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--label", default="")
    parser.add_argument(
        "--before-root",
        default=None,
        help="also run this checkout (git archive of an older commit) before each run",
    )
    parser.add_argument(
        "--env", action="append", default=[], help="extra service setting, e.g. VISION__X=1"
    )
    parser.add_argument(
        "--code-root", default=None, help="run the services from another checkout (git archive)"
    )
    args = parser.parse_args()
    port_q: Any = mp.Queue()
    host = mp.Process(target=_serve_images, args=(port_q,), daemon=True)
    host.start()
    try:
        image_base = f"http://127.0.0.1:{port_q.get(timeout=20)}"
        assert host.pid is not None
        runs: list[dict[str, Any]] = []
        before: list[dict[str, Any]] = []
        for _ in range(args.runs):  # alternating, so both see the same machine load
            if args.before_root:
                before.append(one_run(args, image_base, host.pid, args.before_root))
                print("before", json.dumps(before[-1]), flush=True)
            runs.append(one_run(args, image_base, host.pid, args.code_root))
            print(json.dumps(runs[-1]), flush=True)
    finally:
        host.terminate()
        host.join(5)
    result: dict[str, Any] = {
        "benchmark": (
            "pipeline: lots.submitted -> vision -> translate (1 language) -> lots.translated; "
            "2 images per lot; simulator 0 ms"
        ),
        "label": args.label,
        "extra_env": args.env,
        "code_root": args.code_root or "working tree",
        "lots": args.lots,
        "vision_workers": args.vision_workers,
        "translate_workers": args.translate_workers,
        "warmup_lots": WARMUP_LOTS,
        "median_lots_per_s": statistics.median(r["lots_per_s"] for r in runs),
        "runs": runs,
        **(
            {
                "before": {
                    "code_root": args.before_root,
                    "median_lots_per_s": statistics.median(r["lots_per_s"] for r in before),
                    "runs": before,
                }
            }
            if before
            else {}
        ),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_avg_1m_5m_15m_at_end": [round(x, 2) for x in os.getloadavg()],
            "note": (
                "2 cores shared by every process here plus other engineers' test runs; Kafka "
                "and PostgreSQL are shared servers (postgres_backends counts only the backends "
                "connected to this bench's database; kafka_broker_shared is the whole broker)"
            ),
        },
    }
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
