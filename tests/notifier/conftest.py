"""Notifier fixtures: options wired for loopback receivers, job/lot rows, a manual clock."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from gen_common.ssrf import SsrfSettings
from gen_notifier import handler
from gen_notifier.deliver import registration_check
from gen_notifier.http1 import PinnedClient
from gen_notifier.metrics import Metrics
from gen_notifier.schedule import ManualClock
from gen_notifier.settings import NotifierOptions
from gen_notifier.worker import Sender

from tests.harness.receiver import Receiver

KEY = "test-shared-key"
LOOPBACK = SsrfSettings(allow_cidrs=["127.0.0.1/32"])


def options(**kw: Any) -> NotifierOptions:
    values: dict[str, Any] = {
        "shared_key": KEY,
        "ssrf": LOOPBACK,
        "timeout_s": 2.0,
        "lease_s": 5.0,
        "breaker_min_attempts": 1000,
    }
    values.update(kw)
    return NotifierOptions(**values)


@pytest.fixture
def clock() -> ManualClock:
    """A clock one day behind real time: rows it schedules are due exactly when it says."""
    return ManualClock(datetime.now(UTC) - timedelta(days=1))


def deps_for(o: NotifierOptions, clock: ManualClock) -> handler.Deps:
    return handler.Deps(
        shared_key=o.shared_key.get_secret_value(),
        chunk_size=o.chunk_size,
        base_url="",
        clock=clock,
        refuse=registration_check(o.ssrf, timeout_s=1.0),
    )


@pytest.fixture(autouse=True)
async def _quiet_queue(pool: asyncpg.Pool) -> AsyncIterator[None]:
    """Each test sees only its own due deliveries: leftovers are closed after every test."""
    yield
    await pool.execute(
        """UPDATE webhook_deliveries SET status = 'failed', last_error = 'test ended'
           WHERE status IN ('queued', 'running')"""
    )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver([KEY]) as r:
        yield r


MakeSender = Callable[..., Any]


@pytest.fixture
async def make_sender(pool: asyncpg.Pool, clock: ManualClock) -> AsyncIterator[MakeSender]:
    clients: list[PinnedClient] = []

    def build(o: NotifierOptions | None = None, **kw: Any) -> Sender:
        o = o or options()
        client = PinnedClient(o.ssrf, **kw)
        clients.append(client)
        return Sender(pool, client, o, clock, Metrics())

    yield build
    for c in clients:
        await c.aclose()


async def make_job(
    pool: asyncpg.Pool,
    *,
    total: int = 1,
    webhook_url: str | None = None,
    lot_webhooks: list[str | None] | None = None,
    api_version: int = 1,
    lots: int | None = None,
) -> uuid.UUID:
    """A job and its lots as vision leaves them (status translating)."""
    job_id = uuid.uuid4()
    await pool.execute(
        """INSERT INTO jobs (job_id, client_id, api_version, mode, status, languages, total_lots,
                             webhook_url)
           VALUES ($1, 'test', $2, 'batch', 'processing', '{en}', $3, $4)""",
        job_id,
        api_version,
        total,
        webhook_url,
    )
    hooks = lot_webhooks if lot_webhooks is not None else [None] * total
    for seq in range(total if lots is None else lots):
        await pool.execute(
            """INSERT INTO lots (job_id, lot_seq, lot_id, status, webhook, input_tokens, cost_usd)
               VALUES ($1, $2, $3, 'translating', $4, 100, 0.5)""",
            job_id,
            seq,
            f"lot-{seq}",
            hooks[seq] if seq < len(hooks) else None,
        )
    return job_id


async def deliveries_of(pool: asyncpg.Pool, job_id: uuid.UUID) -> list[asyncpg.Record]:
    return await pool.fetch(
        """SELECT d.*, e.url FROM webhook_deliveries d
           JOIN webhook_endpoints e ON e.id = d.endpoint_id
           WHERE d.job_id = $1 ORDER BY d.id""",
        job_id,
    )


async def attempts_of(pool: asyncpg.Pool, msg_id: str) -> list[asyncpg.Record]:
    return await pool.fetch(
        """SELECT a.* FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id
           WHERE d.msg_id = $1 ORDER BY a.id""",
        msg_id,
    )


async def enqueue(
    pool: asyncpg.Pool, o: NotifierOptions, clock: ManualClock, url: str, body: bytes = b'{"x":1}'
) -> str:
    """One delivery to ``url`` registered like the consumer does; returns its msg_id."""
    job_id = uuid.uuid4()
    async with pool.acquire() as conn, conn.transaction():
        await handler.enqueue(conn, deps_for(o, clock), url, job_id, "completion", lambda _k: body)
    row = await pool.fetchrow("SELECT msg_id FROM webhook_deliveries WHERE job_id = $1", job_id)
    assert row is not None
    return str(row["msg_id"])
