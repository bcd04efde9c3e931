"""Building submitted lots and reading back what the vision stage wrote (shared by the tests)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import orjson
from gen_common import kafka
from gen_common.db import Conn
from gen_common.events import Event, LotAssessed, LotFailed, LotSubmitted, Mode
from gen_common.settings import KafkaSettings
from gen_vision import handler
from gen_vision.settings import VisionOptions


def lot(
    job_id: uuid.UUID,
    seq: int,
    images: list[str],
    *,
    mode: Mode = "realtime",
    total: int = 1,
    info: str = "",
) -> LotSubmitted:
    return LotSubmitted(
        job_id=job_id,
        lot_seq=seq,
        lot_id=f"lot-{seq}",
        images=images,
        languages=["en", "de"],
        mode=mode,
        total_lots=total,
        additional_info=info,
    )


async def submit(pool: asyncpg.Pool, events: list[LotSubmitted], options: VisionOptions) -> None:
    async with pool.acquire() as conn, conn.transaction():
        for event in events:
            await handler.on_submitted(event, conn, options=options)


async def outbox_events(pool: asyncpg.Pool, job_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT payload FROM outbox WHERE key LIKE $1 ORDER BY id", f"{job_id}:%"
    )
    return [orjson.loads(bytes(r["payload"])) for r in rows]


async def work_rows(pool: asyncpg.Pool, job_id: uuid.UUID) -> list[asyncpg.Record]:
    return await pool.fetch("SELECT * FROM vision_work WHERE job_id = $1 ORDER BY lot_seq", job_id)


async def work_statuses(pool: asyncpg.Pool, job_id: uuid.UUID) -> Counter[str]:
    """How many work rows of the job are in each status."""
    rows = await pool.fetch("SELECT status FROM vision_work WHERE job_id = $1", job_id)
    return Counter(r["status"] for r in rows)


async def lot_statuses(pool: asyncpg.Pool, job_id: uuid.UUID) -> Counter[str]:
    """How many lots rows of the job are in each status."""
    rows = await pool.fetch("SELECT status FROM lots WHERE job_id = $1", job_id)
    return Counter(r["status"] for r in rows)


async def settled(pool: asyncpg.Pool, job_id: uuid.UUID) -> bool:
    """Every work row of the job reached done / failed / cancelled."""
    left = await pool.fetchval(
        "SELECT count(*) FROM vision_work WHERE job_id = $1 AND status IN ('queued', 'running')",
        job_id,
    )
    return int(left) == 0


@contextlib.asynccontextmanager
async def observe(
    settings: KafkaSettings, pool: asyncpg.Pool, topics: dict[str, type[Event]]
) -> AsyncIterator[list[Event]]:
    """Collect every event on ``topics`` from the earliest offset (own consumer group)."""
    seen: list[Event] = []

    async def record(event: Event, conn: Conn) -> None:
        seen.append(event)

    subscriptions = [kafka.Subscription(t, m, record) for t, m in topics.items()]
    task = asyncio.create_task(
        kafka.consume(settings, pool=pool, group="observer", subscriptions=subscriptions)
    )
    try:
        yield seen
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def assessed_keys(seen: list[Event], job_id: uuid.UUID) -> set[str]:
    """Lots of the job with a LotAssessed among ``seen``."""
    return {e.lot_key for e in seen if isinstance(e, LotAssessed) and e.job_id == job_id}


def failures(seen: list[Event], job_id: uuid.UUID) -> list[LotFailed]:
    return [e for e in seen if isinstance(e, LotFailed) and e.job_id == job_id]


def assessed_event_ids(seen: list[Event], job_id: uuid.UUID) -> dict[str, set[uuid.UUID]]:
    """Per lot of the job, the event ids of its LotAssessed records among ``seen`` (a record
    published twice carries one id; a second assessment would carry another)."""
    ids: defaultdict[str, set[uuid.UUID]] = defaultdict(set)
    for e in seen:
        if isinstance(e, LotAssessed) and e.job_id == job_id:
            ids[e.lot_key].add(e.event_id)
    return dict(ids)
