"""Building submitted lots and reading back what the vision stage wrote (shared by the tests)."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import orjson
from gen_common.events import LotSubmitted, Mode
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


async def settled(pool: asyncpg.Pool, job_id: uuid.UUID) -> bool:
    """Every work row of the job reached done / failed / cancelled."""
    left = await pool.fetchval(
        "SELECT count(*) FROM vision_work WHERE job_id = $1 AND status IN ('queued', 'running')",
        job_id,
    )
    return int(left) == 0
