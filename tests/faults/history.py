"""What a fault test records and checks: the events produced and acknowledged, what Kafka holds,
and the effects the consumer applied (``test_effects``, keyed by event id).

The checker is the Jepsen-style one of reliability.md §6: every acknowledged event has exactly one
effect row (none lost), no effect row exists for an event nobody produced, and no lot carries two
effect rows (none applied twice).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from dataclasses import dataclass, field

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from gen_common import kafka
from gen_common.events import LotSubmitted
from gen_common.settings import KafkaSettings

from tests.harness.processes import Child, settings_env


def lot(job: uuid.UUID, seq: int) -> LotSubmitted:
    return LotSubmitted(job_id=job, lot_seq=seq, lot_id=seq, images=[], languages=["en"])


@dataclass
class History:
    """Events sent (by id, with their lot_seq) and the ids the broker acknowledged."""

    job: uuid.UUID = field(default_factory=uuid.uuid4)
    attempted: dict[uuid.UUID, int] = field(default_factory=dict)
    acked: set[uuid.UUID] = field(default_factory=set)
    failed: int = 0

    async def produce(
        self,
        publisher: kafka.Publisher,
        count: int,
        *,
        batch: int = 50,
        pace_s: float = 0.02,
        timeout_s: float = 60.0,
    ) -> None:
        """Send ``count`` events, ``batch`` in flight at a time; record each acknowledgement."""
        for start in range(len(self.attempted), len(self.attempted) + count, batch):
            events = [lot(self.job, seq) for seq in range(start, start + batch)]
            self.attempted.update((e.event_id, e.lot_seq) for e in events)
            results = await asyncio.gather(
                *(asyncio.wait_for(publisher.publish(e), timeout_s) for e in events),
                return_exceptions=True,
            )
            for event, result in zip(events, results, strict=True):
                if isinstance(result, BaseException):
                    self.failed += 1
                else:
                    self.acked.add(event.event_id)
            await asyncio.sleep(pace_s)  # pacing, so that faults land mid-stream


def consumer_env(settings: KafkaSettings, db_url: str, **extra: str) -> dict[str, str]:
    return settings_env(
        KAFKA__BOOTSTRAP_SERVERS=settings.bootstrap_servers,
        KAFKA__TOPIC_PREFIX=settings.topic_prefix,
        KAFKA__PARTITIONS=str(settings.partitions),
        KAFKA__REPLICATION_FACTOR=str(settings.replication_factor),
        KAFKA__MIN_INSYNC_REPLICAS=str(settings.min_insync_replicas),
        KAFKA__SESSION_TIMEOUT_MS=str(settings.session_timeout_ms),
        DB__URL=db_url,
        **extra,
    )


async def effects(pool: asyncpg.Pool | asyncpg.Connection, prefix: str) -> dict[uuid.UUID, int]:
    """Event id -> deliveries of every effect row of this test."""
    rows = await pool.fetch(
        "SELECT event_id, deliveries FROM test_effects WHERE prefix = $1", prefix
    )
    return {r["event_id"]: r["deliveries"] for r in rows}


async def applied(pool: asyncpg.Pool | asyncpg.Connection, prefix: str) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM test_effects WHERE prefix = $1", prefix))


def assert_alive(proc: Child, when: str) -> None:
    assert proc.proc is not None
    code = proc.proc.poll()
    assert code is None, f"{proc.module} exited with {code} {when}; see {proc.log}"


async def reached(
    pool: asyncpg.Pool | asyncpg.Connection, prefix: str, n: int, consumer: Child
) -> bool:
    """At least ``n`` effects applied; fails at once if the consumer process died."""
    assert_alive(consumer, f"before {n} effects were applied")
    return await applied(pool, prefix) >= n


async def assert_exactly_once(
    pool: asyncpg.Pool | asyncpg.Connection, prefix: str, history: History
) -> dict[uuid.UUID, int]:
    """Every acknowledged event applied, nothing applied that was not produced, nothing twice."""
    rows = await pool.fetch(
        "SELECT event_id, lot_seq, deliveries FROM test_effects WHERE prefix = $1", prefix
    )
    ids = Counter(r["event_id"] for r in rows)
    seqs = Counter(r["lot_seq"] for r in rows)
    twice = [i for i, n in ids.items() if n > 1] + [s for s, n in seqs.items() if n > 1]
    missing = history.acked - ids.keys()
    unknown = ids.keys() - history.attempted.keys()
    assert not missing, f"{len(missing)} acknowledged events lost (of {len(history.acked)})"
    assert not unknown, f"{len(unknown)} effects of events never produced"
    assert not twice, f"{len(twice)} events applied twice"
    return {r["event_id"]: r["deliveries"] for r in rows}


async def read_topic(
    bootstrap: str, topic: str, partitions: int
) -> dict[tuple[int, int], uuid.UUID]:
    """Every record of ``topic`` up to its current end: (partition, offset) -> event id."""
    raw = await read_raw(bootstrap, topic, partitions)
    return {at: LotSubmitted.model_validate_json(value).event_id for at, value in raw.items()}


async def read_lots(
    bootstrap: str, topic: str, partitions: int
) -> dict[tuple[int, int], LotSubmitted]:
    """Every LotSubmitted of ``topic`` up to its current end, by (partition, offset)."""
    raw = await read_raw(bootstrap, topic, partitions)
    return {at: LotSubmitted.model_validate_json(value) for at, value in raw.items()}


async def read_raw(bootstrap: str, topic: str, partitions: int) -> dict[tuple[int, int], bytes]:
    """Every record value of ``topic`` up to its current end: (partition, offset) -> bytes."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    found: dict[tuple[int, int], bytes] = {}
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        deadline = asyncio.get_running_loop().time() + 60
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            assert asyncio.get_running_loop().time() < deadline, "topic not read in 60 s"
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                for r in records:
                    found[(tp.partition, r.offset)] = r.value or b""
    finally:
        await consumer.stop()
    return found


async def committed_offsets(bootstrap: str, group: str) -> dict[int, int]:
    """The group's committed offset per partition."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items()}
