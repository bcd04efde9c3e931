"""The vision and translate BatchSources on the engine: real stage tables, real image host,
the simulator's Batch API (frozen clock), every lot's outcome and outbox event checked."""

from __future__ import annotations

import functools
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import orjson
import pytest
from gen_common import openai_batch, ratelimits
from gen_common.breaker import Breaker
from gen_common.events import JobCancelRequested, LotAssessed
from gen_common.safe_http import SafeClient
from gen_translate import batch_path as translate_batch
from gen_translate import handler as translate_handler
from gen_translate.settings import TranslateOptions
from gen_vision import assess
from gen_vision import batch_path as vision_batch
from gen_vision.images import ImageChecker
from openai import AsyncOpenAI
from openai_sim.process import RunningSim

from tests.common.openai_batch_support import (
    client,
    engine,
    finished,
    options,
    sim,
    sim_proc,
    wait_for,
)
from tests.vision.conftest import ImageHost, image_host, vision_options
from tests.vision.lots import lot, submit

pytestmark = [pytest.mark.pg]
__all__ = ["client", "image_host", "sim", "sim_proc"]  # fixtures used by name


async def events(pool: asyncpg.Pool, job_id: uuid.UUID, topic: str) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT payload FROM outbox WHERE key LIKE $1 AND topic = $2 ORDER BY id",
        f"{job_id}:%",
        topic,
    )
    return [orjson.loads(bytes(r["payload"])) for r in rows]


@pytest.fixture
async def clean_stage(pool: asyncpg.Pool) -> AsyncIterator[None]:
    """The stages' real names are shared by the session: leave no open batch rows behind."""
    yield
    await pool.execute(
        """UPDATE openai_batches SET status = 'abandoned'
           WHERE stage IN ('vision', 'translate') AND status <> 'finished'"""
    )


async def drive_job(
    pool: asyncpg.Pool,
    sim: RunningSim,
    stage: str,
    done: Any,
    *,
    advance: float = 120,
    rounds: int = 8,
) -> None:
    """Advance the simulated clock until ``done()``; each round waits for the batches that were
    in flight to be applied, or for a new one to be submitted."""
    for _ in range(rounds):
        if await done():
            return
        rows = await pool.fetch(
            "SELECT id FROM openai_batches WHERE stage = $1 AND status = 'submitted'", stage
        )
        ids: list[int] = [r["id"] for r in rows]
        if not ids:
            await wait_for(_open_batch(pool, stage, done), what="a batch to be submitted")
            continue
        sim.admin.clock(advance=advance)
        await wait_for(functools.partial(finished, pool, ids), what=f"rows {ids} applied")
    assert await done()


def _open_batch(pool: asyncpg.Pool, stage: str, done: Any) -> Any:
    async def check() -> bool:
        n = await pool.fetchval(
            "SELECT count(*) FROM openai_batches WHERE stage = $1 AND status = 'submitted'", stage
        )
        return bool(n) or bool(await done())

    return check


async def test_vision_lots_complete_through_the_batch_path(
    pool: asyncpg.Pool,
    client: AsyncOpenAI,
    sim: RunningSim,
    image_host: ImageHost,
    clean_stage: None,
) -> None:
    o = vision_options(batch_min_lots=10)
    job = uuid.uuid4()
    missing = image_host.url("/missing/0.jpg")
    broken = image_host.url("/broken/1.jpg")

    def images(seq: int) -> list[str]:
        urls = [image_host.url(f"/img/{seq}-{n}.jpg") for n in range(3)]
        if seq == 0:
            urls.append(missing)  # 1 of 4 unreachable by our check: a missing image
        if seq == 1:
            urls.append(broken)  # reachable for us, refused by OpenAI in the batch line
        if seq == 2:
            urls = [image_host.url(f"/missing/2-{n}.jpg") for n in range(2)]
        return urls

    await submit(pool, [lot(job, s, images(s), mode="batch", total=20) for s in range(20)], o)
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM vision_work WHERE job_id = $1 AND path = 'batch'", job
        )
        == 20
    )
    async with SafeClient(o.images.ssrf) as http:
        assessor = assess.OpenAIAssessor(
            client,
            breaker=Breaker(o.breaker),
            throttle=ratelimits.Throttle(o.throttle),
            options=o,
            prompt=assess.load_prompt(),
        )
        source = vision_batch.VisionBatchSource(
            pool, checker=ImageChecker(http, o.images), assessor=assessor, options=o
        )
        async with engine(pool, client, source, options()):

            async def done() -> bool:
                left = await pool.fetchval(
                    """SELECT count(*) FROM vision_work
                       WHERE job_id = $1 AND status IN ('queued', 'running')""",
                    job,
                )
                return int(left) == 0

            await drive_job(pool, sim, "vision", done)

    results = {
        r["lot_seq"]: r
        for r in await pool.fetch("SELECT * FROM vision_results WHERE job_id = $1", job)
    }
    assert sorted(results) == [s for s in range(20) if s != 2]
    assert all(r["via_batch"] for r in results.values())
    assert results[0]["missing_images"] == [missing]
    assert results[1]["missing_images"] == [broken]
    assert broken not in results[1]["assessment"]["image_urls"]
    assert results[5]["assessment"]["image_urls"] == images(5)  # every valid image was attached
    price = o.prices[o.model]
    for r in results.values():
        full = assess.cost_usd(_usage(r), price)
        assert float(r["cost_usd"]) == pytest.approx(full / 2, abs=2e-6)
    assessed = await events(pool, job, "lots.assessed")
    assert sorted(e["lot_seq"] for e in assessed) == sorted(results)
    failed = await events(pool, job, "lots.failed")
    assert [(e["lot_seq"], e["reason"]) for e in failed] == [(2, "image_unreachable")]
    assert failed[0]["missing_images"] == images(2)
    lots = {r["lot_seq"]: r for r in await pool.fetch("SELECT * FROM lots WHERE job_id = $1", job)}
    assert lots[1]["status"] == "assessed"
    assert lots[1]["missing_images"] == [broken]
    assert float(lots[3]["cost_usd"]) > 0


def _usage(row: asyncpg.Record) -> Any:
    from gen_common.events import TokenUsage

    return TokenUsage(
        input_tokens=row["input_tokens"],
        cached_tokens=row["cached_tokens"],
        output_tokens=row["output_tokens"],
        reasoning_tokens=row["reasoning_tokens"],
    )


async def _translate_job(pool: asyncpg.Pool, lots: int, languages: list[str]) -> uuid.UUID:
    job = uuid.uuid4()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            """INSERT INTO jobs (job_id, client_id, mode, status, languages, total_lots)
               VALUES ($1, 'test', 'batch', 'processing', $2, $3)""",
            job,
            languages,
            lots,
        )
        await conn.executemany(
            """INSERT INTO lots (job_id, lot_seq, lot_id, status)
               VALUES ($1, $2, $3, 'assessed')""",
            [(job, s, f"lot:{s}") for s in range(lots)],
        )
        deps = translate_handler.Deps(sync_budget_s=45)
        for s in range(lots):
            event = LotAssessed(
                job_id=job,
                lot_seq=s,
                lot_id=f"lot:{s}",  # a client id with ':' never matters: custom_ids are ours
                languages=languages,
                mode="batch",
                assessment={"damages": []},
                description_en=f"<p>Lot {s}: front bumper scratched.</p>",
            )
            await translate_handler.on_assessed(event, conn, deps)
    return job


async def test_translate_lots_complete_and_a_cancelled_job_stops(
    pool: asyncpg.Pool, client: AsyncOpenAI, sim: RunningSim, clean_stage: None
) -> None:
    langs = ["en", "de", "FR"]
    job = await _translate_job(pool, 15, langs)
    other = await _translate_job(pool, 12, langs)
    small = await _translate_job(pool, 2, langs)  # below min_lots: stays for the realtime path
    opts = TranslateOptions()
    source = translate_batch.TranslateBatchSource(pool, options=opts, min_lots=10)
    async with engine(pool, client, source, options()):
        await wait_for(lambda: _submitted_jobs(pool, 2), what="both jobs submitted")
        async with pool.acquire() as conn, conn.transaction():
            await translate_batch.on_control(JobCancelRequested(job_id=other), conn)
        await wait_for(lambda: _remote_cancelled(pool, str(other)), what="the remote cancel")

        async def done() -> bool:
            return len(await events(pool, job, "lots.translated")) == 15

        await drive_job(pool, sim, "translate", done)
        await wait_for(lambda: _all_finished(pool), what="every batch row finished")

    translated = await events(pool, job, "lots.translated")
    for e in translated:
        s = e["lot_seq"]
        assert [d["language"] for d in e["descriptions"]] == ["en", "de", "FR"]
        text = f"<p>Lot {s}: front bumper scratched.</p>"
        assert [d["damages"] for d in e["descriptions"]] == [text, f"[de] {text}", f"[FR] {text}"]
        assert e["pending_languages"] == []
    results = await pool.fetch("SELECT * FROM translate_results WHERE job_id = $1", job)
    assert len(results) == 30
    price = opts.prices[opts.model]
    for r in results:
        full = (r["input_tokens"] - r["cached_tokens"]) * price.input
        full += r["cached_tokens"] * price.cached_input + r["output_tokens"] * price.output
        assert float(r["cost_usd"]) == pytest.approx(full / 1e6 / 2, abs=2e-6)
    assert await events(pool, other, "lots.translated") == []
    other_work = await pool.fetch(
        "SELECT status, count(*) AS n FROM translate_work WHERE job_id = $1 GROUP BY 1", other
    )
    assert {r["status"]: r["n"] for r in other_work} == {"cancelled": 24}
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM translate_work WHERE job_id = $1 AND status = 'queued'", small
        )
        == 4
    )
    await pool.execute("UPDATE translate_work SET status = 'cancelled' WHERE job_id = $1", small)
    batches = await pool.fetch(
        "SELECT job_id, remote_status FROM openai_batches WHERE job_id = ANY($1::text[])",
        [str(job), str(other)],
    )
    assert {(r["job_id"], r["remote_status"]) for r in batches} == {
        (str(job), "completed"),
        (str(other), "cancelled"),
    }
    assert await openai_batch.cancel_job(pool, client, str(other)) == 0


async def _submitted_jobs(pool: asyncpg.Pool, n: int) -> bool:
    count = await pool.fetchval(
        "SELECT count(DISTINCT job_id) FROM openai_batches WHERE stage = 'translate' "
        "AND status = 'submitted'"
    )
    return int(count) >= n


async def _remote_cancelled(pool: asyncpg.Pool, job_id: str) -> bool:
    status = await pool.fetchval(
        "SELECT remote_status FROM openai_batches WHERE job_id = $1", job_id
    )
    return status in ("cancelling", "cancelled")


async def _all_finished(pool: asyncpg.Pool) -> bool:
    n = await pool.fetchval(
        """SELECT count(*) FROM openai_batches
           WHERE stage = 'translate' AND status IN ('preparing', 'uploaded', 'submitted')"""
    )
    return int(n) == 0
