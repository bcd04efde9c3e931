"""Delivery throughput of the notifier's sender to a local receiver.

Seeds N W2-sized deliveries (about 1 kB each, one endpoint) in PostgreSQL, starts the verifying
receiver (tests/harness/receiver.py: X-Signature, body signature and standardwebhooks on every
request) in a separate process, then runs the real :class:`gen_notifier.worker.Sender` loop until
every delivery is ``delivered``. Each delivery is one claimed row, one signed POST, one attempt
row and one state update (its own transaction). Writes bench/results/notifier.json.

    DB__URL=postgresql://gen@127.0.0.1:55432/<db> uv run python bench/bench_notifier.py [-n 5000]

Without ``DB__URL`` it uses the database ``bench_notifier`` on the ``make up`` server (created if
missing), so the stack's own notifier never claims the seeded deliveries.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import pathlib
import platform
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
from gen_common import db, migrate
from gen_common.settings import DbSettings
from gen_common.ssrf import SsrfSettings
from gen_notifier import payloads
from gen_notifier.http1 import PinnedClient
from gen_notifier.metrics import Metrics
from gen_notifier.schedule import SystemClock
from gen_notifier.settings import NotifierOptions
from gen_notifier.worker import Sender
from pydantic import SecretStr

REPO = pathlib.Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "notifier.json"
STACK_SERVER = "postgresql://gen@127.0.0.1:55432"  # `make up`
KEY = "bench-shared-key"


def _receive(port_q: Any, stop: Any, counts: Any) -> None:
    from tests.harness.receiver import Receiver

    rx = Receiver([KEY]).start()
    port_q.put((rx.port, rx.path))
    stop.wait()
    got = rx.snapshot()
    counts[0] = len(got)
    counts[1] = sum(1 for r in got if r.verified)
    counts[2] = len({r.msg_id for r in got})
    rx.stop()


async def seed(pool: asyncpg.Pool, url: str, n: int) -> uuid.UUID:
    job_id = uuid.uuid4()
    lots = [
        {
            "lot_id": f"lot-{i}",
            "status": "completed",
            "descriptions": [
                {"language": "en", "damages": "<p>" + "Dent on the door. " * 40 + "</p>"}
            ],
            "missing_images": None,
            "pending_languages": None,
            "warnings": None,
            "error_code": None,
            "error_message": None,
        }
        for i in range(1)
    ]
    body = payloads.lots_body(KEY.encode(), lots)
    async with pool.acquire() as conn:
        ep = await conn.fetchval(
            "INSERT INTO webhook_endpoints (url) VALUES ($1) RETURNING id", url
        )
        await conn.copy_records_to_table(
            "webhook_deliveries",
            columns=["msg_id", "endpoint_id", "job_id", "kind", "body"],
            records=[(payloads.new_msg_id(), ep, job_id, "lots", body) for _ in range(n)],
        )
    return job_id


async def _database() -> str:
    if url := os.environ.get("DB__URL"):
        return url
    conn = await asyncpg.connect(f"{STACK_SERVER}/gen")
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = 'bench_notifier'"):
            await conn.execute("CREATE DATABASE bench_notifier")
    finally:
        await conn.close()
    return f"{STACK_SERVER}/bench_notifier"


async def run(n: int, workers: int, in_flight: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    port_q, stop, counts = ctx.Queue(), ctx.Event(), ctx.Array("i", 3)
    proc = ctx.Process(target=_receive, args=(port_q, stop, counts), daemon=True)
    proc.start()
    port, path = port_q.get(timeout=30)
    url = f"http://127.0.0.1:{port}{path}"
    settings = DbSettings(url=SecretStr(await _database()), pool_max=workers + 4)
    o = NotifierOptions(
        shared_key=KEY,
        workers=workers,
        per_endpoint_in_flight=in_flight,
        ssrf=SsrfSettings(allow_cidrs=["127.0.0.1/32"]),
    )
    async with db.open_pool(settings) as pool:
        async with pool.acquire() as conn:
            await migrate.apply(conn)
        job_id = await seed(pool, url, n)
        client = PinnedClient(o.ssrf, max_idle=workers)
        try:
            sender = Sender(pool, client, o, SystemClock(), Metrics())
            start = time.perf_counter()
            task = asyncio.create_task(sender.run())
            while True:
                left = await pool.fetchval(
                    """SELECT count(*) FROM webhook_deliveries
                       WHERE job_id = $1 AND status <> 'delivered'""",
                    job_id,
                )
                if left == 0:
                    break
                await asyncio.sleep(0.05)
            elapsed = time.perf_counter() - start
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        finally:
            await client.aclose()
        attempts = await pool.fetchval(
            """SELECT count(*) FROM webhook_attempts a JOIN webhook_deliveries d
               ON d.id = a.delivery_id WHERE d.job_id = $1""",
            job_id,
        )
    stop.set()
    proc.join(30)
    return {
        "benchmark": "notifier deliveries to a local verifying receiver",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "deliveries": n,
        "seconds": round(elapsed, 3),
        "deliveries_per_second": round(n / elapsed, 1),
        "attempts_logged": attempts,
        "receiver_requests": counts[0],
        "receiver_verified": counts[1],
        "receiver_distinct_ids": counts[2],
        "sender_workers": workers,
        "per_endpoint_in_flight": in_flight,
        "body_bytes": len(payloads.lots_body(KEY.encode(), [])) + 800,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "notes": "one process, one endpoint; PostgreSQL shared with other developers",
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=64)
    parser.add_argument("--in-flight", type=int, default=64)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))  # the receiver lives in tests/harness
    result = asyncio.run(run(args.n, args.workers, args.in_flight))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
