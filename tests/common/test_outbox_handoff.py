"""Outbox rows their writer's process publishes right after the commit (gen_common.outbox_handoff),
and the relay leaving such held rows alone until the hold has passed; real PostgreSQL and Kafka."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import asyncpg
import pytest
from gen_common import kafka, outbox
from gen_common.events import LOTS_FAILED, LotFailed
from gen_common.outbox_handoff import Handoff, Written
from gen_common.settings import KafkaSettings

from tests.common.test_outbox import _keys_of, _private_pool
from tests.harness.processes import eventually

pytestmark = [pytest.mark.pg, pytest.mark.kafka]


async def _write_held(pool: asyncpg.Pool, event: LotFailed, held_s: float) -> Written:
    """The row as a writer with a handoff writes it: held, no NOTIFY."""
    topic, key, payload, trace = outbox.row_of(event)
    row = await pool.fetchrow(
        """INSERT INTO outbox (topic, key, payload, traceparent, held_until)
           VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5::float8))
           RETURNING id, traceparent""",
        topic,
        key,
        payload,
        trace,
        held_s,
    )
    assert row is not None
    return Written(row["id"], topic, key, payload, row["traceparent"])


def _failed(job: uuid.UUID, seq: int) -> LotFailed:
    return LotFailed(job_id=job, lot_seq=seq, lot_id=seq, stage="vision", reason="r")


async def test_a_handed_over_row_is_published_at_once_and_deleted(
    pg_url: str, unique: str, kafka_settings: KafkaSettings
) -> None:
    job = uuid.uuid4()
    await kafka.ensure_topics(kafka_settings, [LOTS_FAILED])
    async with _private_pool(pg_url, unique) as pool:
        written = [await _write_held(pool, _failed(job, i), held_s=3600) for i in range(3)]
        async with kafka.open_publisher(kafka_settings) as publisher:
            handoff = Handoff(pool, publisher)
            task = asyncio.create_task(handoff.run())
            try:
                handoff.hand(written[:2])
                handoff.hand(written[2:])
                topic = kafka_settings.topic(LOTS_FAILED)
                keys = await _keys_of(kafka_settings, topic, job, 3)
                assert keys == {_failed(job, i).lot_key for i in range(3)}

                async def deleted() -> bool:
                    left: int = await pool.fetchval("SELECT count(*) FROM outbox")
                    return left == 0

                await eventually(deleted, timeout=10)
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


async def test_the_relay_publishes_a_held_row_only_once_its_hold_has_passed(
    pg_url: str, unique: str, kafka_settings: KafkaSettings
) -> None:
    """The writer's process died before publishing: nothing is lost, and nothing is published
    twice while that process may still be publishing it."""
    job = uuid.uuid4()
    await kafka.ensure_topics(kafka_settings, [LOTS_FAILED])
    topic = kafka_settings.topic(LOTS_FAILED)
    async with _private_pool(pg_url, unique) as pool:
        await _write_held(pool, _failed(job, 0), held_s=8)
        async with pool.acquire() as conn:
            await outbox.add(conn, _failed(job, 1))  # an ordinary row, with its NOTIFY
        async with kafka.open_publisher(kafka_settings) as publisher:
            relay = asyncio.create_task(outbox.relay(pool, publisher, idle_s=0.2))
            try:
                first = await _keys_of(kafka_settings, topic, job, 1)
                assert first == {_failed(job, 1).lot_key}
                await asyncio.sleep(0.6)  # several full passes: the held row stays
                held = await pool.fetchval("SELECT count(*) FROM outbox")
                assert held == 1
                both = await _keys_of(kafka_settings, topic, job, 2)
                assert both == {_failed(job, 0).lot_key, _failed(job, 1).lot_key}
            finally:
                relay.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await relay
