"""Fixtures of the translate tests: the simulator subprocess, jobs/lots rows, event builders."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import asyncpg
import orjson
import pytest
from gen_common.events import LotAssessed, LotTranslated
from openai_sim.process import RunningSim, running

DESCRIPTION_EN = "<p>Front bumper scratched.</p><p>Left door dented.</p>"
ASSESSMENT: dict[str, object] = {
    "damages": [{"part": "front_bumper", "damage_type": "scratch", "severity": "minor"}],
    "overall_condition": "fair",
}


@pytest.fixture(scope="session")
def sim_process() -> Iterator[RunningSim]:
    with running() as sim:
        yield sim


@pytest.fixture
def sim(sim_process: RunningSim) -> RunningSim:
    sim_process.admin.reset()
    return sim_process


async def create_job(
    pool: asyncpg.Pool, lots: int, *, mode: str = "realtime", languages: Sequence[str] = ("ru",)
) -> uuid.UUID:
    """A jobs row and its lots in status 'assessed', as vision leaves them."""
    job_id = uuid.uuid4()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            """INSERT INTO jobs (job_id, client_id, mode, status, languages, total_lots)
               VALUES ($1, 'test', $2, 'processing', $3, $4)""",
            job_id,
            mode,
            list(languages),
            lots,
        )
        await conn.executemany(
            """INSERT INTO lots (job_id, lot_seq, lot_id, status, input_tokens)
               VALUES ($1, $2, $3, 'assessed', 100)""",
            [(job_id, seq, f"lot-{seq}") for seq in range(lots)],
        )
    return job_id


def assessed(
    job_id: uuid.UUID,
    lot_seq: int = 0,
    *,
    languages: Sequence[str] = ("en", "ru"),
    mode: str = "realtime",
    **extra: Any,
) -> LotAssessed:
    values: dict[str, Any] = {
        "job_id": job_id,
        "lot_seq": lot_seq,
        "lot_id": f"lot-{lot_seq}",
        "languages": list(languages),
        "mode": mode,
        "assessment": ASSESSMENT,
        "description_en": DESCRIPTION_EN,
        "missing_images": ["https://img.example/broken/1.jpg"],
    }
    values.update(extra)
    return LotAssessed(**values)


async def emitted(pool: asyncpg.Pool, job_id: uuid.UUID) -> list[LotTranslated]:
    """LotTranslated events of the job waiting in (or published from) the outbox."""
    rows = await pool.fetch(
        "SELECT payload FROM outbox WHERE key LIKE $1 AND topic = 'lots.translated' ORDER BY id",
        f"{job_id}:%",
    )
    return [LotTranslated.model_validate(orjson.loads(bytes(r["payload"]))) for r in rows]
