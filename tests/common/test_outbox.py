"""The transactional outbox: events written with state, published after commit, never before."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from gen_common import db, kafka, migrate, outbox
from gen_common.events import LOTS_FAILED, Event, LotFailed
from gen_common.settings import DbSettings, KafkaSettings
from pydantic import SecretStr

from tests.common.test_kafka import _consume_all
from tests.harness.processes import eventually

pytestmark = [pytest.mark.pg, pytest.mark.kafka]


async def test_rolled_back_events_are_never_published_and_committed_ones_are(
    pool: asyncpg.Pool, kafka_settings: KafkaSettings
) -> None:
    job = uuid.uuid4()
    kept = [
        LotFailed(job_id=job, lot_seq=i, lot_id=i, stage="vision", reason="r") for i in range(50)
    ]
    dropped = LotFailed(job_id=job, lot_seq=999, lot_id=999, stage="vision", reason="r")
    await kafka.ensure_topics(kafka_settings, [LOTS_FAILED])
    with contextlib.suppress(RuntimeError):
        async with pool.acquire() as conn, conn.transaction():
            await outbox.add(conn, dropped)
            raise RuntimeError("the state change failed")
    async with pool.acquire() as conn, conn.transaction():
        await outbox.add_many(conn, list(kept))

    async with kafka.open_publisher(kafka_settings) as publisher:
        relay = asyncio.create_task(outbox.relay(pool, publisher, idle_s=0.1))
        try:
            received = await _consume_all(
                kafka_settings.bootstrap_servers, kafka_settings.topic(LOTS_FAILED), len(kept)
            )
        finally:
            relay.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await relay
    # The session database is shared: the relay may also publish other tests' leftover rows.
    mine = {key for key in received if key.startswith(str(job))}
    assert mine == {e.lot_key for e in kept}
    assert dropped.lot_key not in received


@contextlib.asynccontextmanager
async def _private_pool(pg_url: str, unique: str) -> AsyncIterator[asyncpg.Pool]:
    """A migrated database of its own: no other test's relay takes its outbox rows."""
    name = f"outbox_{unique}"
    admin = await asyncpg.connect(pg_url)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
        url = pg_url.rsplit("/", 1)[0] + f"/{name}"
        conn = await asyncpg.connect(url)
        try:
            await migrate.apply(conn)
        finally:
            await conn.close()
        async with db.open_pool(DbSettings(url=SecretStr(url))) as pool:
            yield pool
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


async def test_a_row_committed_after_newer_ones_were_published_is_published_too(
    pg_url: str, unique: str, kafka_settings: KafkaSettings
) -> None:
    """Passes start near the highest id published (outbox.Cursor); a row that commits after
    newer ids went out is below that start, and the full pass after an idle poll publishes it."""
    job = uuid.uuid4()
    late, early = (
        LotFailed(job_id=job, lot_seq=i, lot_id=i, stage="vision", reason="r") for i in (0, 1)
    )
    await kafka.ensure_topics(kafka_settings, [LOTS_FAILED])
    async with _private_pool(pg_url, unique) as pool:
        straggler = await pool.acquire()
        tx = straggler.transaction()
        await tx.start()
        await outbox.add(straggler, late)  # the lower id, not committed yet
        async with pool.acquire() as conn, conn.transaction():
            await outbox.add(conn, early)
        cursor = outbox.Cursor(lookback=0, full_scan_s=3600)  # full: the first, after idling
        async with kafka.open_publisher(kafka_settings) as publisher:
            relay = asyncio.create_task(outbox.relay(pool, publisher, idle_s=0.3, cursor=cursor))
            try:
                topic = kafka_settings.topic(LOTS_FAILED)
                assert early.lot_key in await _keys_of(kafka_settings, topic, job, 1)

                async def floor_moved() -> bool:  # set once the pass's transaction committed,
                    return cursor.floor > 0  # which may be after Kafka delivered the event

                # the next passes start above the straggler's id
                await eventually(floor_moved, timeout=10)
                await tx.commit()
                await pool.release(straggler)
                assert late.lot_key in await _keys_of(kafka_settings, topic, job, 2)
            finally:
                relay.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await relay


async def _keys_of(settings: KafkaSettings, topic: str, job: uuid.UUID, n: int) -> set[str]:
    """This job's event keys on ``topic``, once there are ``n`` of them (or after 20 s)."""
    return await _consume_all(settings.bootstrap_servers, topic, n, prefix=str(job), timeout_s=20)


async def test_the_relay_drains_full_batches_at_once_and_wakes_on_each_commit(
    pg_url: str, unique: str, kafka_settings: KafkaSettings
) -> None:
    """After a full batch the next pass runs at once (rows may be left); after a short one the
    relay sleeps until a commit's NOTIFY (the idle poll here is far beyond the test's wait)."""
    job = uuid.uuid4()
    events = [
        LotFailed(job_id=job, lot_seq=i, lot_id=i, stage="vision", reason="r") for i in range(6)
    ]
    await kafka.ensure_topics(kafka_settings, [LOTS_FAILED])
    topic = kafka_settings.topic(LOTS_FAILED)
    async with _private_pool(pg_url, unique) as pool:
        async with pool.acquire() as conn, conn.transaction():
            await outbox.add_many(
                conn, list[Event](events[:5])
            )  # one NOTIFY, three passes of 2, 2, 1
        async with kafka.open_publisher(kafka_settings) as publisher:
            relay = asyncio.create_task(outbox.relay(pool, publisher, idle_s=3600, batch=2))
            try:
                assert len(await _keys_of(kafka_settings, topic, job, 5)) == 5
                async with pool.acquire() as conn, conn.transaction():
                    await outbox.add(conn, events[5])
                assert len(await _keys_of(kafka_settings, topic, job, 6)) == 6
            finally:
                relay.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await relay
