"""The consume loop and the publisher against a real Apache Kafka broker."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from gen_common import kafka
from gen_common.db import Conn
from gen_common.errors import PermanentError
from gen_common.events import LOTS_SUBMITTED, LotSubmitted
from gen_common.settings import KafkaSettings

from tests.harness import counting_consumer
from tests.harness.processes import child, eventually, settings_env

pytestmark = [pytest.mark.pg, pytest.mark.kafka]


def _lot(job: uuid.UUID, seq: int) -> LotSubmitted:
    return LotSubmitted(
        job_id=job,
        lot_seq=seq,
        lot_id=f"L{seq}",
        images=[f"https://img.example/{seq}.jpg"],
        languages=["en", "ru"],
    )


async def _effects(pool: asyncpg.Pool, prefix: str) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM test_effects WHERE prefix = $1", prefix))


@pytest.fixture
async def effects_table(pool: asyncpg.Pool) -> None:
    await pool.execute(counting_consumer.TABLE)


async def test_sigkilled_consumer_loses_nothing_and_applies_each_event_once(
    pool: asyncpg.Pool,
    kafka_settings: KafkaSettings,
    migrated: str,
    effects_table: None,
    tmp_path: Path,
) -> None:
    total = 10_000
    prefix = kafka_settings.topic_prefix
    await kafka.ensure_topics(kafka_settings, [LOTS_SUBMITTED])
    job = uuid.uuid4()
    async with kafka.open_publisher(kafka_settings) as publisher:
        assert await publisher.publish_many(_lot(job, i) for i in range(total)) == total

    env = settings_env(
        KAFKA__BOOTSTRAP_SERVERS=kafka_settings.bootstrap_servers,
        KAFKA__TOPIC_PREFIX=prefix,
        KAFKA__MAX_POLL_RECORDS="200",
        DB__URL=migrated,
    )
    log = tmp_path / "consumer.log"
    with child("tests.harness.counting_consumer", env, log) as first:
        await eventually(lambda: _at_least(pool, prefix, 1_500), timeout=120)
        first.kill()
    killed_at = await _effects(pool, prefix)
    assert killed_at < total, "the kill must land mid-stream"

    with child("tests.harness.counting_consumer", env, log) as second:
        await eventually(lambda: _at_least(pool, prefix, total), timeout=180)
        await asyncio.sleep(1.0)  # let any stray redelivery land before counting
        assert second.stop() == 0, "SIGTERM stops the consumer cleanly"

    rows = await pool.fetch(
        "SELECT lot_seq, deliveries FROM test_effects WHERE prefix = $1", prefix
    )
    assert sorted(r["lot_seq"] for r in rows) == list(range(total)), "none missing, none twice"
    assert (
        await pool.fetchval("SELECT count(*) FROM dead_letter WHERE topic LIKE $1", f"{prefix}%")
        == 0
    )


async def _at_least(pool: asyncpg.Pool, prefix: str, n: int) -> bool:
    return await _effects(pool, prefix) >= n


async def test_poison_records_go_to_dead_letter_and_the_partition_keeps_flowing(
    pool: asyncpg.Pool,
    kafka_settings: KafkaSettings,
    effects_table: None,
) -> None:
    settings = kafka_settings.model_copy(update={"partitions": 1})
    topic = settings.topic(LOTS_SUBMITTED)
    await kafka.ensure_topics(settings, [LOTS_SUBMITTED])
    job = uuid.uuid4()
    poison = {
        b"\xff\xfe not json": "undecodable",
        b'{"type":"lot.submitted","job_id":"not-a-uuid"}': "schema-invalid",
        b"null": "schema-invalid",
    }
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    await producer.start()
    poison_offsets = {}
    try:
        for seq in range(10):
            await producer.send_and_wait(topic, kafka.encode(_lot(job, seq)), key=b"k")
            if seq in (2, 5, 8):
                raw = list(poison)[(seq - 2) // 3]
                meta = await producer.send_and_wait(topic, raw, key=b"k")
                poison_offsets[meta.offset] = raw
    finally:
        await producer.stop()

    rejected: list[int] = []

    async def handler(event: LotSubmitted, conn: Conn) -> None:
        if event.lot_seq == 9:
            rejected.append(event.lot_seq)
            raise PermanentError("the handler refuses this one")
        await counting_consumer.record(event, conn, prefix=settings.topic_prefix)

    task = asyncio.create_task(
        kafka.consume(
            settings,
            pool=pool,
            group="poison",
            subscriptions=[kafka.Subscription(LOTS_SUBMITTED, LotSubmitted, handler)],
        )
    )
    try:
        await eventually(lambda: _at_least(pool, settings.topic_prefix, 9), timeout=60)
        await eventually(lambda: _dead_letters(pool, topic, 4), timeout=30)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    rows = await pool.fetch(
        "SELECT kafka_partition, kafka_offset, value, error FROM dead_letter WHERE topic = $1"
        " ORDER BY kafka_offset",
        topic,
    )
    by_offset = {r["kafka_offset"]: r for r in rows}
    for offset, raw in poison_offsets.items():
        assert by_offset[offset]["value"] == raw
        assert by_offset[offset]["kafka_partition"] == 0
        assert by_offset[offset]["error"].startswith("invalid_event")
    handler_refused = [r for r in rows if r["kafka_offset"] not in poison_offsets]
    assert len(handler_refused) == 1
    assert handler_refused[0]["error"].startswith("permanent")
    assert set(rejected) == {9}  # seen in the batch, then alone in a savepoint
    assert await _effects(pool, settings.topic_prefix) == 9


async def _dead_letters(pool: asyncpg.Pool, topic: str, n: int) -> bool:
    count = await pool.fetchval("SELECT count(*) FROM dead_letter WHERE topic = $1", topic)
    return int(count) >= n


async def test_retryable_failure_rewinds_and_redelivers(
    pool: asyncpg.Pool,
    kafka_settings: KafkaSettings,
    effects_table: None,
) -> None:
    from gen_common.errors import UpstreamUnavailable

    await kafka.ensure_topics(kafka_settings, [LOTS_SUBMITTED])
    job = uuid.uuid4()
    async with kafka.open_publisher(kafka_settings) as publisher:
        await publisher.publish_many(_lot(job, i) for i in range(20))
    failures = {"left": 3}

    async def handler(event: LotSubmitted, conn: Conn) -> None:
        if failures["left"] > 0:
            failures["left"] -= 1
            raise UpstreamUnavailable("transient")
        await counting_consumer.record(event, conn, prefix=kafka_settings.topic_prefix)

    task = asyncio.create_task(
        kafka.consume(
            kafka_settings,
            pool=pool,
            group="retry",
            retry_backoff_s=0.05,
            subscriptions=[kafka.Subscription(LOTS_SUBMITTED, LotSubmitted, handler)],
        )
    )
    try:
        await eventually(lambda: _at_least(pool, kafka_settings.topic_prefix, 20), timeout=60)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    deliveries = await pool.fetchval(
        "SELECT sum(deliveries) FROM test_effects WHERE prefix = $1", kafka_settings.topic_prefix
    )
    assert deliveries == 20, "rolled-back batches leave no effect behind"
    assert failures["left"] == 0


async def test_tail_reads_only_new_events(kafka_settings: KafkaSettings) -> None:
    await kafka.ensure_topics(kafka_settings, [LOTS_SUBMITTED])
    job = uuid.uuid4()
    async with kafka.open_publisher(kafka_settings) as publisher:
        await publisher.publish(_lot(job, 0))
        seen: list[int] = []
        started = asyncio.Event()
        task = asyncio.create_task(
            kafka.tail(
                kafka_settings,
                topics=[LOTS_SUBMITTED],
                models={LOTS_SUBMITTED: LotSubmitted},
                # the session's other tests publish to this topic too
                callback=lambda e: seen.extend(events_lot_seq(e, job)),
                started=started,
            )
        )
        try:
            await asyncio.wait_for(started.wait(), 30)
            await publisher.publish(_lot(job, 1))
            await publisher.publish(_lot(job, 2))

            async def two() -> bool:
                return len(seen) >= 2

            await eventually(two, timeout=30)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert seen == [1, 2]


def events_lot_seq(event: object, job: uuid.UUID) -> list[int]:
    """The lot_seq of ``event`` if it is a lot of ``job``."""
    assert isinstance(event, LotSubmitted)
    return [event.lot_seq] if event.job_id == job else []


async def _consume_all(
    bootstrap: str, topic: str, expected: int, *, prefix: str = "", timeout_s: float = 60
) -> set[str]:
    """The keys (those starting with ``prefix``) on ``topic``, once ``expected`` of them were
    read, or after ``timeout_s``."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    keys: set[str] = set()
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while len(keys) < expected and asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                keys.update(k for r in records if (k := r.key.decode()).startswith(prefix))
    finally:
        await consumer.stop()
    return keys
