"""gen_common.kafka.Publisher.publish_encoded (ingest's job path) builds one batch per partition:
every record lands on the partition a per-record ``send()`` gives its key, in input order per
partition, with the trace header, and every record is acknowledged (acks=all, idempotent
producer) — on the real broker."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from gen_common import kafka
from gen_common.events import LOTS_SUBMITTED, lot_key
from gen_common.settings import KafkaSettings

pytestmark = [pytest.mark.kafka]
RECORDS = 3000  # ~4.5 MB: several 256 KB batches per partition


async def read_all(settings: KafkaSettings, topic: str, expected: int) -> list[tuple[int, str]]:
    """(partition, key) of every record, in offset order per partition; checks the header."""
    consumer = AIOKafkaConsumer(
        settings.topic(topic),
        bootstrap_servers=settings.bootstrap_servers,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    found: list[tuple[int, str]] = []
    try:
        async with asyncio.timeout(60):
            while len(found) < expected:
                for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                    for r in records:
                        assert r.key is not None
                        assert [name for name, _ in r.headers] == [kafka.TRACEPARENT]
                        found.append((tp.partition, r.key.decode()))
        assert not await consumer.getmany(timeout_ms=300)  # nothing more than expected
    finally:
        await consumer.stop()
    return found


async def per_record(settings: KafkaSettings, topic: str, keys: list[str]) -> dict[str, int]:
    """The partition a plain producer's ``send()`` (default partitioner) gives each key."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    await producer.start()
    try:
        futures = [await producer.send(settings.topic(topic), b"x", key=k.encode()) for k in keys]
        metadata = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return {k: m.partition for k, m in zip(keys, metadata, strict=True)}


async def test_batches_keep_partitions_and_order_and_every_record_is_acknowledged(
    kafka_settings: KafkaSettings,
) -> None:
    reference = "reference.lots"
    await kafka.ensure_topics(kafka_settings, [LOTS_SUBMITTED, reference])
    job = uuid.uuid4()
    keys = [lot_key(job, seq) for seq in range(RECORDS)]
    values = [
        b'{"lot_seq":%d,"pad":"%s"}' % (seq, b"x" * (500 + seq % 2000)) for seq in range(RECORDS)
    ]
    async with kafka.open_publisher(kafka_settings) as publisher:
        sent = await publisher.publish_encoded(LOTS_SUBMITTED, zip(keys, values, strict=True))
    assert sent == RECORDS

    landed = await read_all(kafka_settings, LOTS_SUBMITTED, RECORDS)
    assert sorted(k for _, k in landed) == sorted(keys)  # each exactly once
    expected = await per_record(kafka_settings, reference, keys)
    assert {k: p for p, k in landed} == expected
    assert len(set(expected.values())) == kafka_settings.partitions
    for partition in range(kafka_settings.partitions):
        seqs = [int(k.split(":")[1]) for p, k in landed if p == partition]
        assert seqs == sorted(seqs), f"partition {partition} out of input order"


async def test_a_refused_record_fails_the_call(kafka_settings: KafkaSettings) -> None:
    await kafka.ensure_topics(kafka_settings, [LOTS_SUBMITTED])
    job = uuid.uuid4()
    records = [
        (lot_key(job, 0), b"{}"),
        (lot_key(job, 1), b"x" * 2_000_000),
        (lot_key(job, 2), b"{}"),
    ]
    async with kafka.open_publisher(kafka_settings) as publisher:
        with pytest.raises(KafkaError):
            await publisher.publish_encoded(LOTS_SUBMITTED, records)
        # The producer stays usable for the next job.
        assert await publisher.publish_encoded(LOTS_SUBMITTED, [(lot_key(job, 3), b"{}")]) == 1
