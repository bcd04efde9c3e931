"""Shared pieces of the Batch-engine tests: a real work table + BatchSource over it, the simulator
fixture (frozen clock), an engine runner, and a subprocess entry point for SIGKILL tests.

The source is deliberately naive (no owner checks): if the engine settled an item twice, the
``completions`` / ``settles`` counters would show it.

    OAB_PG=… OAB_BASE_URL=… OAB_TABLE=… OAB_STAGE=… OAB_OPTIONS=<json> \
        python -m tests.common.openai_batch_support
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any

import asyncpg
import orjson
import pytest
from gen_common import jobs, openai_batch
from gen_common.db import Conn
from gen_common.errors import InvalidModelOutput
from gen_common.openai_batch import (
    BatchOptions,
    BatchRequest,
    BatchUsage,
    LineError,
    Rejected,
)
from openai import AsyncOpenAI
from openai.types.responses import Response
from openai_sim.process import RunningSim, running

from tests.harness.processes import settings_env

MODEL = "gpt-6-luna"
STAGE = "tst"


class TableSource:
    """A BatchSource over a real table shaped like gen_common.jobs expects."""

    def __init__(self, table: str, *, stage: str = STAGE) -> None:
        self.table = table
        self._stage = stage
        self.pool: asyncpg.Pool | None = None  # set: prepare() may cancel rows (a job cancel)

    @property
    def stage(self) -> str:
        return self._stage

    async def claim(
        self, conn: Conn, *, owner: str, lease_s: float, limit: int
    ) -> list[BatchRequest]:
        rows = await jobs.claim(
            conn, self.table, owner=owner, lease_s=lease_s, limit=limit, where="mode = 'batch'"
        )
        return [BatchRequest(r["id"], r["job_id"], r["attempts"], body(r)) for r in rows]

    async def prepare(self, requests: Sequence[BatchRequest]) -> list[BatchRequest | Rejected]:
        """Out-of-transaction step; the test stage refuses prompts marked [[unready]], and rows
        marked [[cancel]] are cancelled meanwhile (as a jobs.control handler would)."""
        doomed = [r.work_id for r in requests if "[[cancel]]" in str(r.body)]
        if doomed and self.pool is not None:
            await self.pool.execute(
                f"UPDATE {self.table} SET status = 'cancelled' WHERE id = ANY($1::bigint[])",
                doomed,
            )
        return [
            Rejected(r, LineError("not_ready", "refused by prepare", status_code=400))
            if "[[unready]]" in str(r.body)
            else r
            for r in requests
        ]

    async def hold(
        self, conn: Conn, work_ids: Sequence[int], *, owner: str, lease_s: float
    ) -> set[int]:
        rows = await conn.fetch(
            f"""UPDATE {self.table} SET lease_until = now() + make_interval(secs => $3)
                WHERE id = ANY($1::bigint[]) AND status = 'running' AND lease_owner = $2
                RETURNING id""",
            list(work_ids),
            owner,
            lease_s,
        )
        return {r["id"] for r in rows}

    async def complete(
        self, conn: Conn, work_id: int, response: Response, usage: BatchUsage
    ) -> None:
        prompt = await conn.fetchval(f"SELECT prompt FROM {self.table} WHERE id = $1", work_id)
        if "[[reject]]" in prompt:  # the stage's own check of the answer refuses it
            raise InvalidModelOutput("rejected by the stage")
        await conn.execute(
            f"""UPDATE {self.table} SET status = 'done', result = $2, input_tokens = $3,
                       output_tokens = $4, price_factor = $5, completions = completions + 1,
                       settles = settles + 1, lease_owner = NULL, lease_until = NULL
                WHERE id = $1""",
            work_id,
            response.output_text,
            usage.input_tokens,
            usage.output_tokens,
            usage.price_factor,
        )

    async def retry(self, conn: Conn, work_id: int, *, delay_s: float, error: LineError) -> None:
        await conn.execute(
            f"""UPDATE {self.table} SET status = 'queued', lease_owner = NULL, lease_until = NULL,
                       next_attempt_at = now() + make_interval(secs => $2), last_error = $3,
                       settles = settles + 1
                WHERE id = $1""",
            work_id,
            delay_s,
            error.code,
        )

    async def fail(self, conn: Conn, work_id: int, error: LineError) -> None:
        """The stage rule under test: an image error drops that image and requeues at once."""
        if error.image_error:
            images: list[str] = await conn.fetchval(
                f"SELECT images FROM {self.table} WHERE id = $1", work_id
            )
            bad = [u for u in images if u in error.message]
            if bad:
                await conn.execute(
                    f"""UPDATE {self.table} SET status = 'queued', lease_owner = NULL,
                               lease_until = NULL, next_attempt_at = now(),
                               images = $2, missing = missing || $3::text[],
                               last_error = $4, settles = settles + 1
                        WHERE id = $1""",
                    work_id,
                    [u for u in images if u not in bad],
                    bad,
                    error.code,
                )
                return
        await conn.execute(
            f"""UPDATE {self.table} SET status = 'failed', lease_owner = NULL, lease_until = NULL,
                       last_error = $2, settles = settles + 1
                WHERE id = $1""",
            work_id,
            error.code,
        )

    async def release(
        self, conn: Conn, work_ids: Sequence[int], *, delay_s: float, reason: str
    ) -> None:
        await conn.execute(
            f"""UPDATE {self.table} SET status = 'queued', lease_owner = NULL, lease_until = NULL,
                       attempts = greatest(attempts - 1, 0), releases = releases + 1,
                       next_attempt_at = now() + make_interval(secs => $2), last_error = $3
                WHERE id = ANY($1::bigint[])""",
            list(work_ids),
            delay_s,
            reason,
        )


def body(row: asyncpg.Record) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"type": "input_text", "text": row["prompt"]}]
    parts += [{"type": "input_image", "image_url": u, "detail": "low"} for u in row["images"]]
    request: dict[str, Any] = {
        "model": row["model"],
        "input": [{"role": "user", "content": parts}],
        "reasoning": {"effort": "none"},
    }
    if row["max_output_tokens"] is not None:
        request["max_output_tokens"] = row["max_output_tokens"]
    return request


async def create_table(conn: Conn) -> str:
    table = f"batch_work_{uuid.uuid4().hex[:10]}"
    await conn.execute(
        f"""CREATE TABLE {table} (
                id bigserial PRIMARY KEY,
                job_id text NOT NULL,
                mode text NOT NULL DEFAULT 'batch',
                status text NOT NULL DEFAULT 'queued',
                priority smallint NOT NULL DEFAULT 0,
                attempts integer NOT NULL DEFAULT 0,
                next_attempt_at timestamptz NOT NULL DEFAULT now(),
                lease_owner text, lease_until timestamptz, last_error text,
                model text NOT NULL DEFAULT '{MODEL}',
                prompt text NOT NULL,
                images text[] NOT NULL DEFAULT '{{}}',
                missing text[] NOT NULL DEFAULT '{{}}',
                max_output_tokens integer,
                result text, input_tokens integer, output_tokens integer, price_factor float8,
                completions integer NOT NULL DEFAULT 0,
                settles integer NOT NULL DEFAULT 0,
                releases integer NOT NULL DEFAULT 0)"""
    )
    return table


async def add_items(
    conn: Conn,
    table: str,
    job_id: str,
    count: int,
    *,
    prompt: str = "Lot {i}: describe the vehicle.",
    images: Callable[[int], list[str]] = lambda i: [],
    model: str = MODEL,
    max_output_tokens: int | None = None,
) -> None:
    await conn.copy_records_to_table(
        table,
        records=[
            (job_id, prompt.format(i=i), images(i), model, max_output_tokens) for i in range(count)
        ],
        columns=["job_id", "prompt", "images", "model", "max_output_tokens"],
    )


async def wait_for(
    check: Callable[[], Awaitable[bool]], *, timeout: float = 60.0, what: str = "condition"
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def counts(pool: asyncpg.Pool, table: str) -> dict[str, int]:
    rows = await pool.fetch(f"SELECT status, count(*) AS n FROM {table} GROUP BY status")
    return {r["status"]: r["n"] for r in rows}


async def batch_rows(pool: asyncpg.Pool, stage: str) -> list[asyncpg.Record]:
    return await pool.fetch("SELECT * FROM openai_batches WHERE stage = $1 ORDER BY id", stage)


async def all_settled(pool: asyncpg.Pool, table: str) -> bool:
    c = await counts(pool, table)
    return set(c) <= {"done", "failed", "cancelled"}


async def drive(
    pool: asyncpg.Pool, sim: RunningSim, source: TableSource, *, advance: float, rounds: int = 10
) -> int:
    """Advance the simulated clock round by round until every item is settled.

    Each round waits for a submitted batch, advances the clock and waits until the batches that
    were in flight are applied. Returns the peak in-flight enqueued-token estimate seen.
    """
    peak = 0
    for _ in range(rounds):
        if await all_settled(pool, source.table):
            return peak
        await wait_for(
            lambda: submitted_or_settled(pool, source), what="a batch in flight or all settled"
        )
        rows = await pool.fetch(
            "SELECT id FROM openai_batches WHERE stage = $1 AND status = 'submitted'",
            source.stage,
        )
        peak = max(peak, await inflight(pool, MODEL))
        sim.admin.clock(advance=advance)
        ids: list[int] = [r["id"] for r in rows]
        await wait_for(functools.partial(finished, pool, ids), what=f"rows {ids} applied")
    assert await all_settled(pool, source.table), "items left after every round"
    return peak


async def submitted_or_settled(pool: asyncpg.Pool, source: TableSource) -> bool:
    return await any_submitted(pool, source.stage) or await all_settled(pool, source.table)


async def finished(pool: asyncpg.Pool, ids: list[int]) -> bool:
    n = await pool.fetchval(
        "SELECT count(*) FROM openai_batches WHERE id = ANY($1::bigint[]) AND status = 'finished'",
        ids,
    )
    return bool(n == len(ids))


async def remote_batches(client: AsyncOpenAI) -> list[Any]:
    return [b async for b in client.batches.list(limit=100)]


async def status_is(pool: asyncpg.Pool, stage: str, status: str) -> bool:
    rows = await batch_rows(pool, stage)
    return bool(rows) and all(r["status"] == status for r in rows)


async def any_submitted(pool: asyncpg.Pool, stage: str) -> bool:
    rows = await batch_rows(pool, stage)
    return any(r["status"] == "submitted" for r in rows)


async def inflight(pool: asyncpg.Pool, model: str) -> int:
    from gen_common.batch_pack import inflight_tokens

    async with pool.acquire() as conn:
        return await inflight_tokens(conn, model)


async def count_rows(pool: asyncpg.Pool, stage: str, n: int) -> bool:
    return len(await batch_rows(pool, stage)) >= n


async def count_submitted(pool: asyncpg.Pool, stage: str, n: int) -> bool:
    rows = await batch_rows(pool, stage)
    return bool(sum(r["status"] == "submitted" for r in rows) >= n)


FAST = {
    "submit_interval_s": 0.2,
    "poll_interval_s": 0.2,
    "submit_lease_s": 2.0,
    "poll_lease_s": 5.0,
    "retry_delays_s": [0.5, 0.5, 0.5],
    "token_limit_backoff_s": 1.0,
}


def options(**overrides: Any) -> BatchOptions:
    return BatchOptions(**{**FAST, **overrides})


@contextlib.asynccontextmanager
async def engine(
    pool: asyncpg.Pool, client: AsyncOpenAI, source: openai_batch.BatchSource, opts: BatchOptions
) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(openai_batch.run(pool, client, source, opts))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
async def source(pool: asyncpg.Pool, unique: str) -> AsyncIterator[TableSource]:
    async with pool.acquire() as conn:
        table = await create_table(conn)
    yield TableSource(table, stage=f"t{unique}")
    async with pool.acquire() as conn:
        await conn.execute(f"DROP TABLE {table}")
        # a failed test must not leave in-flight rows that eat a later test's token budget
        await conn.execute(
            """UPDATE openai_batches SET status = 'abandoned'
               WHERE stage = $1 AND status <> 'finished'""",
            f"t{unique}",
        )


@pytest.fixture(scope="session")
def sim_proc() -> Iterator[RunningSim]:
    with running({"clock": {"speed": 0.0}}) as sim:
        yield sim


@pytest.fixture
def sim(sim_proc: RunningSim) -> RunningSim:
    sim_proc.admin.reset()
    return sim_proc


@pytest.fixture
async def client(sim: RunningSim) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(
        base_url=sim.base_url, api_key="sk-test", max_retries=0, _strict_response_validation=True
    ) as c:
        yield c


async def _main(pg_url: str, base_url: str, table: str, stage: str, raw_options: str) -> None:
    from gen_common.db import open_pool
    from gen_common.settings import DbSettings
    from pydantic import SecretStr

    opts = BatchOptions(**orjson.loads(raw_options))
    async with (
        open_pool(DbSettings(url=SecretStr(pg_url))) as pool,
        AsyncOpenAI(base_url=base_url, api_key="sk-test", max_retries=0) as client,
    ):
        await openai_batch.run(pool, client, TableSource(table, stage=stage), opts)


def child_env(
    pool_url: str, sim: RunningSim, source: TableSource, opts: BatchOptions
) -> dict[str, str]:
    """Environment for ``python -m tests.common.openai_batch_support`` (see the module doc)."""
    return settings_env(
        OAB_PG=pool_url,
        OAB_BASE_URL=sim.base_url,
        OAB_TABLE=source.table,
        OAB_STAGE=source.stage,
        OAB_OPTIONS=opts.model_dump_json(),
    )


if __name__ == "__main__":
    env = os.environ
    asyncio.run(
        _main(
            env["OAB_PG"],
            env["OAB_BASE_URL"],
            env["OAB_TABLE"],
            env["OAB_STAGE"],
            env["OAB_OPTIONS"],
        )
    )
