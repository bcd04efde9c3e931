"""gen_common.db: every wait of the pool is bounded, and a failed cleanup never hides why it ran.

The connection faults come from tests.harness.fault_proxy (TCP resets, paused traffic) between
the pool and PostgreSQL. The shape under test is the one every long-running loop has (vision's
lease renewer, the relay, the consumer): ``with suppress(*DB_TROUBLE): async with
pool.acquire() as conn: ...``. Before the bounds in gen_common.db, a task cancelled inside such a
block whose release reset or ROLLBACK then hit a reset saw a connection error in place of its
CancelledError, swallowed it and ran on forever (faults D3: one lot never assessed).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest
from gen_common import db
from gen_common.settings import DbSettings
from pydantic import SecretStr

from tests.harness.fault_proxy import FaultProxy

pytestmark = pytest.mark.pg


async def test_close_is_bounded_when_a_connection_is_never_released(migrated: str) -> None:
    started = time.monotonic()
    async with db.open_pool(DbSettings(url=migrated), close_timeout_s=0.5) as pool:
        held = await pool.acquire()  # never released: pool.close() alone would wait forever
        assert await held.fetchval("SELECT 1") == 1
    assert time.monotonic() - started < 5
    with pytest.raises(asyncpg.InterfaceError):  # terminated, not left open
        await held.fetchval("SELECT 1")


@contextlib.asynccontextmanager
async def proxied_pool(
    migrated: str,
    *,
    seed: int = 0,
    pool_max: int = 2,
    command_timeout_s: float = 30.0,
    acquire_timeout_s: float = 60.0,
    release_timeout_s: float | None = None,
    reset_on_release: bool = False,
) -> AsyncIterator[tuple[FaultProxy, asyncpg.Pool]]:
    """A pool whose every connection passes the fault proxy."""
    with FaultProxy.for_url(migrated, seed=seed) as proxy:
        settings = DbSettings(
            url=SecretStr(proxy.url(migrated)),
            pool_max=pool_max,
            command_timeout_s=command_timeout_s,
            acquire_timeout_s=acquire_timeout_s,
            release_timeout_s=release_timeout_s,
        )
        pool_cm = db.open_pool(settings, close_timeout_s=2, reset_on_release=reset_on_release)
        async with pool_cm as pool:
            yield proxy, pool


async def until_cancelled(pool: asyncpg.Pool, *, tx: bool, holding: asyncio.Event) -> None:
    """The renewer's shape: a loop that rides out database trouble."""
    while True:
        with contextlib.suppress(*db.DB_TROUBLE):
            async with pool.acquire() as conn:
                if tx:
                    async with conn.transaction():
                        await conn.execute("SELECT 1")
                        holding.set()
                        await asyncio.sleep(30)
                holding.set()
                await asyncio.sleep(30)
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("tx", [False, True], ids=["release-reset", "rollback"])
async def test_a_cancelled_block_stays_cancelled_when_its_cleanup_hits_a_reset(
    migrated: str, tx: bool
) -> None:
    # The full reset on release, so the release sends a query the proxy can reset.
    async with proxied_pool(migrated, reset_on_release=True) as (proxy, pool):
        holding = asyncio.Event()
        task = asyncio.create_task(until_cancelled(pool, tx=tx, holding=holding))
        await asyncio.wait_for(holding.wait(), 10)
        proxy.reset_peer = 1.0  # the cleanup's first chunk (reset query or ROLLBACK) is reset
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=5)
        proxy.clear()
        if not done:  # the bug: the cancellation became a connection error and was swallowed
            task.cancel()
            await asyncio.wait([task], timeout=5)
        assert done, "the cancelled task ran on"
        assert task.cancelled()
        assert proxy.snapshot()["resets"], "no reset happened: the test tested nothing"
        assert await pool.fetchval("SELECT 2") == 2  # the pool recovered its connection


async def test_release_is_bounded_and_terminates_a_connection_whose_reset_hangs(
    migrated: str,
) -> None:
    # Statements may take 30 s; the release's reset gets 0.5 s, then the connection goes.
    async with proxied_pool(migrated, release_timeout_s=0.5, reset_on_release=True) as (
        proxy,
        pool,
    ):
        conn = await pool.acquire()
        assert await conn.fetchval("SELECT 1") == 1
        raw = conn._con  # type: ignore[attr-defined]  # the connection behind the proxy object
        proxy.paused = True  # the reset query is sent and never answered
        started = time.monotonic()
        await asyncio.wait_for(pool.release(conn), 10)  # never raises: the work was done
        took = time.monotonic() - started
        proxy.clear()
        assert raw.is_closed()
        assert await pool.fetchval("SELECT 3") == 3
    assert 0.4 < took < 3, took


async def test_the_default_release_sends_nothing_but_unlistens_a_listener(migrated: str) -> None:
    async with proxied_pool(migrated, pool_max=1) as (proxy, pool):
        conn = await pool.acquire()
        assert await conn.fetchval("SELECT 1") == 1
        proxy.paused = True  # a release that sent anything would wait for its answer
        await asyncio.wait_for(pool.release(conn), 2)
        proxy.clear()
        conn = await pool.acquire()  # pool_max=1: the same connection, never reset
        await conn.add_listener("gen_test_channel", lambda *_: None)
        await conn.execute("SET application_name = 'kept'")  # session state we never use
        with pytest.warns(asyncpg.InterfaceWarning, match="notification listener"):
            await pool.release(conn)  # without remove_listener
        async with pool.acquire() as again:
            assert await again.fetchval("SELECT count(*) FROM pg_listening_channels()") == 0
            assert await again.fetchval("SHOW application_name") == "kept"  # the same one


async def test_acquire_is_bounded(migrated: str) -> None:
    async with proxied_pool(migrated, acquire_timeout_s=0.5) as (_, pool):
        held = [await pool.acquire(), await pool.acquire()]  # pool_max=2
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(pool.acquire(), 10)
        assert time.monotonic() - started < 3
        for conn in held:
            await pool.release(conn)


async def test_every_wait_is_bounded_and_every_cancel_lands_under_resets(migrated: str) -> None:
    """Twelve loops of the renewer's shape on four connections, resets with p=0.05 per chunk,
    one loop cancelled (and replaced) every 40 ms: every block ends within the bounds, every
    cancelled loop ends cancelled within the cleanup's bound."""
    command_s, acquire_s, release_s = 1.0, 3.0, 1.0
    block_bound = acquire_s + 3 * command_s + release_s + 1.0
    cancel_bound = command_s + release_s + 1.0  # the ROLLBACK, then the release
    blocks: list[float] = []
    outcomes: dict[str, int] = {}

    async def loop(pool: asyncpg.Pool, rng: random.Random) -> None:
        while True:
            started = time.monotonic()
            try:
                async with pool.acquire() as conn:
                    if rng.random() < 0.5:
                        async with conn.transaction():
                            await conn.execute("SELECT pg_sleep(0.01)")
                            await conn.fetchval("SELECT 1")
                    else:
                        await conn.fetchval("SELECT 1")
                outcome = "ok"
            except db.DB_TROUBLE as exc:
                outcome = type(exc).__name__
            finally:
                blocks.append(time.monotonic() - started)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            await asyncio.sleep(rng.random() * 0.02)

    async with proxied_pool(
        migrated,
        seed=5,
        pool_max=4,
        command_timeout_s=command_s,
        acquire_timeout_s=acquire_s,
        release_timeout_s=release_s,
    ) as (proxy, pool):
        rng = random.Random(5)

        def spawn() -> asyncio.Task[None]:
            return asyncio.create_task(loop(pool, random.Random(rng.random())))

        tasks = [spawn() for _ in range(12)]
        proxy.reset_peer = 0.05
        ran_on, cancel_s = 0, 0.0
        ends = time.monotonic() + 8
        while time.monotonic() < ends:
            await asyncio.sleep(0.04)
            victim = tasks.pop(rng.randrange(len(tasks)))
            victim.cancel()
            started = time.monotonic()
            done, _ = await asyncio.wait([victim], timeout=cancel_bound)
            cancel_s = max(cancel_s, time.monotonic() - started)
            ran_on += not (done and victim.cancelled())
            if not done:
                tasks.append(victim)  # the bug: it keeps running; cancelled again below
            tasks.append(spawn())
        proxy.clear()
        for task in tasks:
            task.cancel()
        never_ended = await _all_done(tasks, timeout=block_bound)
        resets = proxy.snapshot()["resets"]
    assert ran_on == 0, f"{ran_on} cancelled loops ran on"
    assert never_ended == 0, f"{never_ended} loops never ended"
    assert max(blocks) < block_bound, max(blocks)
    assert cancel_s < cancel_bound
    assert sum(resets.values()) > 50, resets
    assert outcomes.get("ok", 0) > 100, outcomes


async def _all_done(tasks: list[asyncio.Task[None]], *, timeout: float) -> int:
    """How many of ``tasks`` did not end within ``timeout`` (those are cancelled again, and
    abandoned: a loop that swallows every cancel never ends)."""
    _, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    return len(pending)
