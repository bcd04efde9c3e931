"""The SSRF policy on webhook URLs: at registration and at send time; the canary hears nothing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import asyncpg
import pytest
from gen_common.ssrf import SsrfSettings
from gen_notifier import handler
from gen_notifier.deliver import registration_check
from gen_notifier.http1 import PinnedClient
from gen_notifier.metrics import Metrics
from gen_notifier.schedule import ManualClock
from gen_notifier.worker import Sender

from tests.harness.receiver import Receiver
from tests.notifier.conftest import KEY, deps_for, options

pytestmark = pytest.mark.pg


@pytest.fixture
def canary() -> Iterator[Receiver]:
    with Receiver([KEY], host="127.0.0.2") as rx:
        yield rx


def table(port: int) -> list[str]:
    return [
        f"http://127.0.0.2:{port}/hook",
        f"http://0x7f.0.0.2:{port}/hook",
        f"http://2130706434:{port}/hook",
        f"http://0177.0.0.2:{port}/hook",
        f"http://[::ffff:127.0.0.2]:{port}/hook",
        f"http://[::1]:{port}/hook",
        f"http://0.0.0.0:{port}/hook",
        "http://[64:ff9b::a9fe:a9fe]/hook",
        "http://[2002:a9fe:a9fe::]/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://100.64.0.1/hook",
        "http://10.0.0.1/hook",
        "http://172.16.0.1/hook",
        "http://192.168.1.1/hook",
        "http://[fc00::1]/hook",
        "http://[fe80::1]/hook",
        "http://[fd00:ec2::254]/hook",
        f"http://user:pw@127.0.0.1:{port}/hook",
        f"ftp://127.0.0.1:{port}/hook",
    ]


async def test_refused_at_registration_and_at_send_time(
    pool: asyncpg.Pool, clock: ManualClock, canary: Receiver
) -> None:
    o = options()
    deps = deps_for(o, clock)
    job_id = uuid.uuid4()
    urls = table(canary.port)
    async with pool.acquire() as conn, conn.transaction():
        for url in urls:
            await handler.enqueue(conn, deps, url, job_id, "completion", lambda _k: b"{}")
    rows = await pool.fetch(
        "SELECT id, status, last_error FROM webhook_deliveries WHERE job_id = $1", job_id
    )
    assert len(rows) == len(urls)
    assert {r["status"] for r in rows} == {"failed"}
    assert all(r["last_error"] for r in rows)
    # Send time: even if such rows were queued (e.g. registered under another policy), the
    # address actually dialled is checked before every attempt.
    await pool.execute(
        "UPDATE webhook_deliveries SET status = 'queued', next_attempt_at = $2 WHERE job_id = $1",
        job_id,
        clock.now(),
    )
    client = PinnedClient(o.ssrf)
    await Sender(pool, client, o, clock, Metrics()).run_once()
    await client.aclose()
    attempts = await pool.fetch(
        """SELECT a.error_class FROM webhook_attempts a JOIN webhook_deliveries d
           ON d.id = a.delivery_id WHERE d.job_id = $1""",
        job_id,
    )
    assert len(attempts) == len(urls)
    assert {a["error_class"] for a in attempts} == {"refused"}
    statuses = await pool.fetch("SELECT status FROM webhook_deliveries WHERE job_id = $1", job_id)
    assert {r["status"] for r in statuses} == {"failed"}
    assert canary.snapshot() == []
    # Control: the canary is reachable once its address is allow-listed.
    open_o = options(ssrf=SsrfSettings(allow_cidrs=["127.0.0.0/8"]))
    async with pool.acquire() as conn, conn.transaction():
        await handler.enqueue(
            conn, deps_for(open_o, clock), urls[0], job_id, "completion", lambda _k: b"{}"
        )
    client = PinnedClient(open_o.ssrf)
    await Sender(pool, client, open_o, clock, Metrics()).run_once()
    await client.aclose()
    assert len(canary.snapshot()) == 1


async def test_dns_rebinding_is_refused_at_send_time(
    pool: asyncpg.Pool, clock: ManualClock, canary: Receiver
) -> None:
    answers = {"first": True}

    async def rebinding(host: str, port: int) -> list[str]:
        if answers["first"]:
            answers["first"] = False
            return ["93.184.216.34"]  # public at registration
        return ["127.0.0.2"]  # the canary afterwards

    o = options()
    deps = deps_for(o, clock)
    deps = handler.Deps(
        shared_key=deps.shared_key,
        chunk_size=deps.chunk_size,
        base_url="",
        clock=clock,
        refuse=registration_check(o.ssrf, timeout_s=1.0, resolver=rebinding),
    )
    job_id = uuid.uuid4()
    url = f"http://rebind.example:{canary.port}/hook"
    async with pool.acquire() as conn, conn.transaction():
        await handler.enqueue(conn, deps, url, job_id, "completion", lambda _k: b"{}")
    row = await pool.fetchrow("SELECT * FROM webhook_deliveries WHERE job_id = $1", job_id)
    assert row is not None
    assert row["status"] == "queued"
    client = PinnedClient(o.ssrf, resolver=rebinding)
    await Sender(pool, client, o, clock, Metrics()).run_once()
    await client.aclose()
    row = await pool.fetchrow("SELECT * FROM webhook_deliveries WHERE job_id = $1", job_id)
    assert row is not None
    assert row["status"] == "failed"
    assert "refused" in row["last_error"]
    assert canary.snapshot() == []
