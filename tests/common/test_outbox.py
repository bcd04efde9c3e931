"""The transactional outbox: events written with state, published after commit, never before."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import asyncpg
import pytest
from gen_common import kafka, outbox
from gen_common.events import LOTS_FAILED, LotFailed
from gen_common.settings import KafkaSettings

from tests.common.test_kafka import _consume_all

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
