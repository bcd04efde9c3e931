"""The real ``python -m gen_notifier``: Kafka in, webhooks out, SIGKILL mid-delivery (C3)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import httpx
import pytest
from gen_common import kafka
from gen_common.events import Description, LotTranslated
from gen_common.settings import KafkaSettings

from tests.harness.receiver import Receiver
from tests.notifier.conftest import KEY, make_job

pytestmark = [pytest.mark.pg, pytest.mark.kafka, pytest.mark.e2e]
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def notifier_env(db_url: str, kafka_settings: KafkaSettings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if "__" not in k}
    env.update(
        {
            "ENV": "test",
            "PYTHONUNBUFFERED": "1",
            "DB__URL": db_url,
            "KAFKA__BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
            "KAFKA__TOPIC_PREFIX": kafka_settings.topic_prefix,
            "KAFKA__PARTITIONS": str(kafka_settings.partitions),
            "NOTIFIER__SHARED_KEY": KEY,
            "NOTIFIER__SSRF__ALLOW_CIDRS": '["127.0.0.1/32"]',
            "NOTIFIER__HTTP_PORT": str(free_port()),
            "NOTIFIER__TIMEOUT_S": "1.5",
            "NOTIFIER__LEASE_S": "2",
            "NOTIFIER__REAP_INTERVAL_S": "0.3",
            "NOTIFIER__IDLE_POLL_S": "0.2",
        }
    )
    return env


@contextmanager
def notifier(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gen_notifier"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"not true within {timeout} s")
        await asyncio.sleep(0.05)


def lot_event(job_id: uuid.UUID, seq: int) -> LotTranslated:
    return LotTranslated(
        job_id=job_id,
        lot_seq=seq,
        lot_id=f"lot-{seq}",
        descriptions=[Description(language="en", damages="<p>Scratch.</p>")],
    )


async def test_sigkill_between_receipt_and_record_resends_same_id(
    pool: asyncpg.Pool, migrated: str, kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    await kafka.ensure_topics(kafka_settings)
    env = notifier_env(migrated, kafka_settings)
    log = tmp_path / "notifier.log"
    with Receiver([KEY]) as rx:
        rx.hold.clear()  # the first request waits for its answer until the test lets it go
        job_id = await make_job(pool, total=1, lot_webhooks=[rx.hook()])
        with notifier(env, log) as proc:
            async with kafka.open_publisher(kafka_settings) as publisher:
                await publisher.publish(lot_event(job_id, 0))
            assert await asyncio.to_thread(rx.arrived.wait, 60), "no delivery arrived"
            proc.send_signal(signal.SIGKILL)  # after receipt, before the 2xx is recorded
            proc.wait(10)
        rx.hold.set()  # answers 200 into the dead socket
        (row,) = await pool.fetch("SELECT * FROM webhook_deliveries WHERE job_id = $1", job_id)
        assert row["status"] == "running"
        with notifier(env, log) as proc:

            async def delivered() -> bool:
                status = await pool.fetchval(
                    "SELECT status FROM webhook_deliveries WHERE id = $1", row["id"]
                )
                return bool(status == "delivered")

            await eventually(delivered, 60)
            base = f"http://127.0.0.1:{env['NOTIFIER__HTTP_PORT']}"
            async with httpx.AsyncClient(base_url=base) as http:

                async def serving() -> bool:
                    try:
                        return (await http.get("/health")).status_code == 200
                    except httpx.TransportError:
                        return False

                await eventually(serving, 30)
                failures = (await http.get("/api/v1/webhook-failures")).json()
                assert failures["success"] is True
                assert b"notifier_attempts_total" in (await http.get("/metrics")).content
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0  # a clean stop
        got = rx.by_msg(row["msg_id"])
    assert len(got) == 2
    assert all(r.verified for r in got)
    assert int(got[1].headers["webhook-timestamp"]) >= int(got[0].headers["webhook-timestamp"])
    assert got[0].body == got[1].body
    attempts = await pool.fetch(
        "SELECT * FROM webhook_attempts WHERE delivery_id = $1 ORDER BY id", row["id"]
    )
    assert [(a["error_class"], a["succeeded"]) for a in attempts] == [
        ("lease_expired", False),
        (None, True),
    ]
    lines = [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]
    sent = [
        x for x in lines if x.get("msg") == "delivery attempt" and x.get("msg_id") == row["msg_id"]
    ]
    assert [x["status"] for x in sent] == ["delivered"]  # the log shows it delivered once
    lot = await pool.fetchrow("SELECT status FROM lots WHERE job_id = $1", job_id)
    assert lot is not None
    assert lot["status"] == "completed"
