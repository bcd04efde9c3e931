"""The outbox relay publishes an event as soon as its transaction commits (NOTIFY), including
when the commit lands while a relay pass is finding nothing — never after the idle poll."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer
from gen_common import kafka, outbox
from gen_common.events import LOTS_FAILED, LotFailed
from gen_common.settings import KafkaSettings

from tests.common.test_outbox import _private_pool

pytestmark = [pytest.mark.pg, pytest.mark.kafka]
IDLE_S = 60.0  # the relay's fallback poll: far beyond the test's deadline


def failed(job: uuid.UUID) -> LotFailed:
    return LotFailed(job_id=job, lot_seq=0, lot_id=0, stage="vision", reason="r")


async def _drain_until(settings: KafkaSettings, key: str, seconds: float) -> bool:
    consumer = AIOKafkaConsumer(
        settings.topic(LOTS_FAILED),
        bootstrap_servers=settings.bootstrap_servers,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        deadline = asyncio.get_running_loop().time() + seconds
        while asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                if any(r.key.decode() == key for r in records):
                    return True
        return False
    finally:
        await consumer.stop()


async def test_a_commit_during_an_empty_pass_is_published_at_once(
    pg_url: str, unique: str, kafka_settings: KafkaSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a database of its own: rows other tests left would make the first pass publish them
    (and a short pass that published something waits for the next NOTIFY, so the empty pass this
    test races might never come)."""
    async with _private_pool(pg_url, unique) as pool:
        await _race_an_empty_pass(pool, kafka_settings, monkeypatch)


async def _race_an_empty_pass(
    pool: asyncpg.Pool, kafka_settings: KafkaSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    await kafka.ensure_topics(kafka_settings, [LOTS_FAILED])
    event = failed(uuid.uuid4())
    real = outbox.publish_pending
    injected = asyncio.Event()
    heard = asyncio.Event()

    async def racing(pool_: asyncpg.Pool, publisher: kafka.Publisher, **kw: Any) -> int:
        published = await real(pool_, publisher, **kw)
        if not published and not injected.is_set():
            # The pass read nothing; now the event commits and the relay's listener hears its
            # NOTIFY before the pass returns.
            injected.set()
            async with pool.acquire() as conn, conn.transaction():
                await outbox.add(conn, event)
            await asyncio.wait_for(heard.wait(), 10)
        return published

    monkeypatch.setattr(outbox, "publish_pending", racing)
    add_listener = asyncpg.Connection.add_listener
    remove_listener = asyncpg.Connection.remove_listener
    wrapped: dict[Any, Any] = {}

    async def spied(self: asyncpg.Connection, channel: str, callback: Any) -> None:
        def relayed(*args: Any) -> None:
            callback(*args)  # the relay's own wake-up first,
            heard.set()  # then the test learns that the relay has been told

        wrapped[callback] = relayed
        await add_listener(self, channel, relayed)

    async def unspied(self: asyncpg.Connection, channel: str, callback: Any) -> None:
        await remove_listener(self, channel, wrapped.pop(callback, callback))

    monkeypatch.setattr(asyncpg.Connection, "add_listener", spied)
    monkeypatch.setattr(asyncpg.Connection, "remove_listener", unspied)
    async with kafka.open_publisher(kafka_settings) as publisher:
        relay = asyncio.create_task(outbox.relay(pool, publisher, idle_s=IDLE_S))
        try:
            assert await _drain_until(kafka_settings, event.lot_key, 20)
        finally:
            relay.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await relay
    assert injected.is_set()


async def test_an_idle_relay_is_woken_by_the_commit(
    pool: asyncpg.Pool, kafka_settings: KafkaSettings
) -> None:
    await kafka.ensure_topics(kafka_settings, [LOTS_FAILED])
    event = failed(uuid.uuid4())
    async with kafka.open_publisher(kafka_settings) as publisher:
        relay = asyncio.create_task(outbox.relay(pool, publisher, idle_s=IDLE_S))
        try:
            await asyncio.sleep(0.5)  # let it go idle (not synchronisation: any moment works)
            async with pool.acquire() as conn, conn.transaction():
                await outbox.add(conn, event)
            assert await _drain_until(kafka_settings, event.lot_key, 20)
        finally:
            relay.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await relay
