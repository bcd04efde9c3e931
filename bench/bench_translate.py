"""Throughput of the translate stage: lots/s from lots.assessed to lots.translated, one language.

Starts the OpenAI simulator (zero latency) and the real service (``python -m gen_translate``) as
subprocesses, seeds the jobs/lots rows vision would have left, publishes N LotAssessed events
(languages en + ru) to real Kafka, and reads lots.translated until every lot is there. The clock
runs from the first publish to the last LotTranslated; each lot is one consumer insert, one claim,
one Responses call, one store transaction with the outbox row, and one relay publish.
Writes bench/results/translate.json.

    DB__URL=postgresql://gen@127.0.0.1:55432/<db> KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:19092 \
        uv run python bench/bench_translate.py [-n 2000] [--workers 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
from gen_common import kafka, migrate
from gen_common.events import LOTS_TRANSLATED, Event, LotAssessed, LotTranslated
from gen_common.settings import KafkaSettings
from openai_sim.process import running

REPO = pathlib.Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "translate.json"
DESCRIPTION = (
    "<p>Front bumper scratched on the left side.</p><p>Rear door dented, paint intact.</p>"
)


async def seed(url: str, job_id: uuid.UUID, lots: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        await migrate.apply(conn)
        await conn.execute(
            """INSERT INTO jobs (job_id, client_id, mode, status, languages, total_lots)
               VALUES ($1, 'bench', 'batch', 'processing', '{en,ru}', $2)""",
            job_id,
            lots,
        )
        await conn.copy_records_to_table(
            "lots",
            columns=["job_id", "lot_seq", "lot_id", "status"],
            records=[(job_id, seq, json.dumps(f"B{seq}"), "assessed") for seq in range(lots)],
        )
    finally:
        await conn.close()


def events(job_id: uuid.UUID, lots: int) -> list[LotAssessed]:
    return [
        LotAssessed(
            job_id=job_id,
            lot_seq=seq,
            lot_id=f"B{seq}",
            languages=["en", "ru"],
            mode="realtime",
            assessment={"damages": [{"part": "front_bumper", "damage_type": "scratch"}]},
            description_en=DESCRIPTION,
        )
        for seq in range(lots)
    ]


async def measure(kafka_settings: KafkaSettings, job_id: uuid.UUID, lots: int) -> float:
    done: set[int] = set()
    finished = asyncio.Event()
    started = asyncio.Event()

    def keep(event: Event) -> None:
        if isinstance(event, LotTranslated) and event.job_id == job_id:
            assert [d.language for d in event.descriptions] == ["en", "ru"]
            done.add(event.lot_seq)
            if len(done) == lots:
                finished.set()

    await kafka.ensure_topics(kafka_settings)
    tail = asyncio.create_task(
        kafka.tail(
            kafka_settings,
            topics=[LOTS_TRANSLATED],
            models={LOTS_TRANSLATED: LotTranslated},
            callback=keep,
            started=started,
        )
    )
    try:
        await asyncio.wait_for(started.wait(), 60)
        batch = events(job_id, lots)
        async with kafka.open_publisher(kafka_settings) as publisher:
            t0 = time.perf_counter()
            await publisher.publish_many(batch)
            await asyncio.wait_for(finished.wait(), 600)
            return time.perf_counter() - t0
    finally:
        tail.cancel()
        await asyncio.gather(tail, return_exceptions=True)


def cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process so far (includes start-up)."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--lots", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=16)
    args = parser.parse_args()
    url = os.environ.get("DB__URL", "postgresql://gen@127.0.0.1:55432/gen")
    bootstrap = os.environ.get("KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:19092")
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    kafka_settings = KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=prefix)
    job_id = uuid.uuid4()
    asyncio.run(seed(url, job_id, args.lots))
    with running() as sim, tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if "__" not in k}
        env.update(
            {
                "ENV": "test",
                "KAFKA__BOOTSTRAP_SERVERS": bootstrap,
                "KAFKA__TOPIC_PREFIX": prefix,
                "DB__URL": url,
                "DB__POOL_MAX": str(args.workers + 8),
                "OPENAI__BASE_URL": sim.base_url,
                "OPENAI__API_KEY": "sk-bench",
                "TRANSLATE__WORKERS": str(args.workers),
                "LOG__LEVEL": "WARNING",
            }
        )
        log = pathlib.Path(tmp) / "translate.log"
        with log.open("wb") as out:
            service = subprocess.Popen(
                [sys.executable, "-m", "gen_translate"], env=env, stdout=out, stderr=out
            )
        try:
            seconds = asyncio.run(measure(kafka_settings, job_id, args.lots))
            service_cpu_s = cpu_seconds(service.pid)
            sim_cpu_s = cpu_seconds(sim.process.pid)
        finally:
            service.terminate()
            service.wait(30)
        calls = sim.admin.stats()["totals"]["calls"]
    result: dict[str, Any] = {
        "benchmark": "translate: lots.assessed -> lots.translated, 1 language, simulator 0 ms",
        "lots": args.lots,
        "workers": args.workers,
        "seconds": round(seconds, 3),
        "lots_per_s": round(args.lots / seconds, 1),
        "openai_calls": calls,
        "service_cpu_ms_per_lot": round(service_cpu_s * 1000 / args.lots, 2),
        "simulator_cpu_ms_per_lot": round(sim_cpu_s * 1000 / args.lots, 2),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "load_avg_1m": round(os.getloadavg()[0], 2),
            "python": platform.python_version(),
        },
        "note": "service, simulator, Kafka broker, PostgreSQL and this driver share the machine",
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
