"""The claimer: one claim statement for every idle worker, on real PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg
import pytest
from gen_common import jobs
from gen_common.claimer import Claimer
from gen_common.wakeup import Wakeup

from tests.common.test_jobs import TABLE

pytestmark = pytest.mark.pg


class Rig:
    def __init__(self, pool: asyncpg.Pool, tag: str) -> None:
        self.pool, self.tag, self.wakeup = pool, tag, Wakeup()
        self.limits: list[int] = []
        self.paused = False

    async def claim(self, limit: int, owner: str) -> list[asyncpg.Record]:
        self.limits.append(limit)
        async with self.pool.acquire() as conn:
            return await jobs.claim(
                conn, "test_work", owner=owner, lease_s=30, limit=limit, where=f"tag = '{self.tag}'"
            )

    async def add(self, n: int) -> None:
        await self.pool.executemany("INSERT INTO test_work (tag) VALUES ($1)", [(self.tag,)] * n)
        self.wakeup.notify()

    async def owners(self) -> list[str | None]:
        rows = await self.pool.fetch(
            "SELECT lease_owner FROM test_work WHERE tag = $1 ORDER BY id", self.tag
        )
        return [r["lease_owner"] for r in rows]


@contextlib.asynccontextmanager
async def running(
    pool: asyncpg.Pool, unique: str
) -> AsyncIterator[tuple[Rig, Claimer[asyncpg.Record]]]:
    await pool.execute(TABLE)
    rig = Rig(pool, unique)
    claimer = Claimer(
        pool,
        "test_work",
        rig.claim,
        owner=f"proc-{unique}",
        wakeup=rig.wakeup,
        idle_poll_s=30,
        pause_s=lambda: 0.05 if rig.paused else 0.0,
    )
    task = asyncio.create_task(claimer.run())
    try:
        yield rig, claimer
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_idle_workers_share_one_claim_statement(pool: asyncpg.Pool, unique: str) -> None:
    async with running(pool, unique) as (rig, claimer):
        await rig.add(4)
        rows = await asyncio.wait_for(asyncio.gather(*(claimer.take() for _ in range(4))), 10)
    assert len({r["id"] for r in rows}) == 4
    assert rig.limits == [4]  # one statement leased a row for each of the four workers
    assert {r["lease_owner"] for r in rows} == {f"proc-{unique}:1"}


async def test_claims_take_a_power_of_two_and_serve_the_rest_at_once(
    pool: asyncpg.Pool, unique: str
) -> None:
    async with running(pool, unique) as (rig, claimer):
        await rig.add(7)
        rows = await asyncio.wait_for(asyncio.gather(*(claimer.take() for _ in range(7))), 10)
    assert len({r["id"] for r in rows}) == 7
    assert rig.limits == [4, 2, 1]


async def test_new_work_is_claimed_on_a_wakeup_not_the_poll(
    pool: asyncpg.Pool, unique: str
) -> None:
    async with running(pool, unique) as (rig, claimer):
        taken = asyncio.create_task(claimer.take())
        await asyncio.sleep(0.2)  # an empty claim, then the claimer waits (poll: 30 s)
        assert not taken.done()
        await rig.add(1)
        row = await asyncio.wait_for(taken, 5)
    assert row["lease_owner"] == f"proc-{unique}:2"
    assert rig.limits == [1, 1]


async def test_no_claims_while_paused(pool: asyncpg.Pool, unique: str) -> None:
    async with running(pool, unique) as (rig, claimer):
        rig.paused = True
        await rig.add(1)
        taken = asyncio.create_task(claimer.take())
        await asyncio.sleep(0.3)
        assert not taken.done()
        assert rig.limits == []
        rig.paused = False
        await asyncio.wait_for(taken, 5)


async def test_on_the_way_out_rows_its_claims_hold_are_released(
    pool: asyncpg.Pool, unique: str
) -> None:
    async with pool.acquire() as conn:
        await conn.execute(TABLE)
        await conn.execute("INSERT INTO test_work (tag) VALUES ($1)", unique)
        [other] = await jobs.claim(
            conn, "test_work", owner="another-process:1", lease_s=30, where=f"tag = '{unique}'"
        )
    async with running(pool, unique) as (rig, claimer):
        await rig.add(2)
        await asyncio.wait_for(asyncio.gather(claimer.take(), claimer.take()), 10)
        assert await rig.owners() == ["another-process:1", *[f"proc-{unique}:1"] * 2]
    assert await rig.owners() == ["another-process:1", None, None]  # the other's lease stays
    assert other["attempts"] == 1


async def test_items_of_several_rows_count_as_their_rows(pool: asyncpg.Pool, unique: str) -> None:
    """A claim grouped into items (translate: all languages of a lot) was full when it leased as
    many rows as asked, however few items they made: the workers still waiting are served by
    the next claim at once, not after the poll."""
    await pool.execute(TABLE)
    rig = Rig(pool, unique)

    async def pairs(limit: int, owner: str) -> list[list[asyncpg.Record]]:
        rows = await rig.claim(limit, owner)
        return [rows[i : i + 2] for i in range(0, len(rows), 2)]

    claimer = Claimer(
        pool,
        "test_work",
        pairs,
        owner=f"p-{unique}",
        wakeup=rig.wakeup,
        idle_poll_s=30,
        rows_of=len,
    )
    task = asyncio.create_task(claimer.run())
    try:
        await rig.add(8)
        items = await asyncio.wait_for(asyncio.gather(*(claimer.take() for _ in range(4))), 10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert sorted(len(item) for item in items) == [1, 2, 2, 2]
    assert rig.limits == [4, 2, 1]  # the waiters left after a full claim, at once
    assert len({row["id"] for item in items for row in item}) == 7


async def test_an_intake_hands_rows_it_leased_to_reserved_workers_and_returns_the_rest(
    pool: asyncpg.Pool, unique: str
) -> None:
    async with running(pool, unique) as (rig, claimer):
        takers = [asyncio.create_task(claimer.take()) for _ in range(3)]
        await asyncio.sleep(0.2)  # an empty claim; the three wait
        with claimer.reserve() as reserved:
            assert reserved.slots == 3
            await pool.execute("INSERT INTO test_work (tag) VALUES ($1)", unique)
            async with pool.acquire() as conn:  # the intake's own lease, as it writes the row
                leased = await jobs.claim(
                    conn, "test_work", owner=reserved.owner, lease_s=30, where=f"tag = '{unique}'"
                )
            reserved.hand(leased)
        first = await asyncio.wait_for(takers[0], 5)
        assert first["lease_owner"] == reserved.owner
        assert not any(t.done() for t in takers[1:])  # back to waiting, for the claimer
        await rig.add(2)
        rest = await asyncio.wait_for(asyncio.gather(*takers[1:]), 10)
    assert len({r["id"] for r in [first, *rest]}) == 3


async def test_nothing_is_reserved_while_claims_are_paused(pool: asyncpg.Pool, unique: str) -> None:
    async with running(pool, unique) as (rig, claimer):
        taker = asyncio.create_task(claimer.take())
        await asyncio.sleep(0.2)
        rig.paused = True
        with claimer.reserve() as reserved:
            assert reserved.slots == 0
        rig.paused = False
        await rig.add(1)
        assert (await asyncio.wait_for(taker, 10))["lease_owner"].startswith(f"proc-{unique}:")


async def test_an_intake_cannot_take_the_workers_a_claim_in_flight_leases_for(
    pool: asyncpg.Pool, unique: str
) -> None:
    """A reservation during a claim gets none of the workers that claim counts on: each of the
    claim's rows reaches a worker (none is left leased to nobody until its lease expires)."""
    await pool.execute(TABLE)
    rig = Rig(pool, unique)
    in_claim, go_on = asyncio.Event(), asyncio.Event()

    async def slow_claim(limit: int, owner: str) -> list[asyncpg.Record]:
        rows = await rig.claim(limit, owner)
        in_claim.set()
        await go_on.wait()
        return rows

    claimer = Claimer(
        pool, "test_work", slow_claim, owner=f"s-{unique}", wakeup=rig.wakeup, idle_poll_s=30
    )
    await rig.add(2)
    takers = [asyncio.create_task(claimer.take()) for _ in range(2)]
    task = asyncio.create_task(claimer.run())
    try:
        await asyncio.wait_for(in_claim.wait(), 10)
        with claimer.reserve() as reserved:
            assert reserved.slots == 0
        go_on.set()
        rows = await asyncio.wait_for(asyncio.gather(*takers), 10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert len({r["id"] for r in rows}) == 2
