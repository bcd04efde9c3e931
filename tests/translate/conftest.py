"""Fixtures of the translate tests: the simulator subprocess, jobs/lots rows, event builders."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import asyncpg
import orjson
import pytest
from gen_common import llm, ratelimits
from gen_common.breaker import Breaker, BreakerSettings
from gen_common.events import LotAssessed, LotTranslated
from gen_common.settings import OpenAISettings
from gen_common.wakeup import Wakeup
from gen_translate import handler, worker
from gen_translate.describe import Describer, OpenAIDescriber
from gen_translate.settings import TranslateOptions
from openai_sim.process import RunningSim, running
from pydantic import SecretStr

from tests.harness.processes import eventually

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


@contextlib.asynccontextmanager
async def running_workers(
    pool: asyncpg.Pool,
    sim: RunningSim,
    *,
    breaker: Breaker | None = None,
    workers: int = 4,
    claim_where: str = "TRUE",
    wrap_describer: Callable[[Describer], Describer] | None = None,
    throttle: ratelimits.Throttle | None = None,
    **options: Any,
) -> AsyncIterator[Breaker]:
    """The translate workers and reaper in this process, against the simulator.

    Work rows left queued by earlier tests are cancelled first, so only this test's lots run.
    """
    await pool.execute(
        "UPDATE translate_work SET status = 'cancelled' WHERE status IN ('queued', 'running')"
    )
    options.setdefault("idle_poll_s", 0.2)
    options.setdefault("reap_interval_s", 0.2)
    options.setdefault("retry_base_s", 0.05)
    opts = TranslateOptions(workers=workers, **options)
    breaker = breaker or Breaker(BreakerSettings())
    settings = OpenAISettings(api_key=SecretStr("sk-test"), base_url=sim.base_url, max_retries=0)
    wake = Wakeup()
    async with llm.client(settings) as client, pool.acquire() as listener:
        await listener.add_listener(handler.WAKE_CHANNEL, wake.notify)
        throttle = throttle or ratelimits.Throttle(opts.throttle)
        describer: Describer = OpenAIDescriber(client, opts, throttle)
        deps = worker.WorkerDeps(
            pool=pool,
            describer=describer if wrap_describer is None else wrap_describer(describer),
            options=opts,
            breaker=breaker,
            wake=wake,
            owner=f"test-{uuid.uuid4().hex[:6]}",
            claim_where=claim_where,
        )
        tasks = [asyncio.create_task(worker.run_workers(deps, worker.claimer_of(deps)))]
        tasks.append(asyncio.create_task(worker.run_reaper(pool, opts.reap_interval_s)))
        try:
            yield breaker
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await listener.remove_listener(handler.WAKE_CHANNEL, wake.notify)


async def wait_translated(pool: asyncpg.Pool, job_id: uuid.UUID, lots: int, timeout: float) -> None:
    async def all_done() -> bool:
        done = await pool.fetchval(
            """SELECT count(*) FROM translate_lots
               WHERE job_id = $1 AND translated_at IS NOT NULL""",
            job_id,
        )
        return bool(done == lots)

    await eventually(all_done, timeout=timeout)
