"""SIGKILL the only broker while an acks=all producer is sending; restart it; nothing acked is lost.

This test starts its own Apache Kafka node (it kills it), whatever broker the session uses.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from gen_common import kafka
from gen_common.events import LOTS_SUBMITTED, LotSubmitted
from gen_common.settings import KafkaSettings
from gen_devstack import kafka_local

from tests.common.test_kafka import _consume_all

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[kafka_local.Cluster]:
    cluster = kafka_local.Cluster(tmp_path / "kafka", nodes=1, heap_mb=384)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


async def test_every_acknowledged_event_survives_a_broker_crash(
    own_broker: kafka_local.Cluster,
) -> None:
    settings = KafkaSettings(
        bootstrap_servers=own_broker.bootstrap_servers,
        partitions=3,
        request_timeout_ms=15_000,
        topic_prefix="restart.",
    )
    await kafka.ensure_topics(settings, [LOTS_SUBMITTED])
    job = uuid.uuid4()
    acked: list[str] = []
    failed = 0
    node = own_broker.members[0]

    async def produce(publisher: kafka.Publisher, start: int, count: int) -> None:
        nonlocal failed
        for seq in range(start, start + count):
            event = LotSubmitted(job_id=job, lot_seq=seq, lot_id=seq, images=[], languages=["en"])
            try:
                await asyncio.wait_for(publisher.publish(event), 20)
            except (TimeoutError, Exception):
                failed += 1
            else:
                acked.append(event.lot_key)

    async with kafka.open_publisher(settings) as publisher:
        sender = asyncio.create_task(produce(publisher, 0, 3_000))
        while len(acked) < 1_000:
            await asyncio.sleep(0.01)
        own_broker.kill(node)  # SIGKILL mid-stream
        await asyncio.sleep(1.0)
        await asyncio.to_thread(own_broker.restart, node)
        await sender
        await produce(publisher, 3_000, 200)  # the producer works again after the restart

    received = await _consume_all(
        settings.bootstrap_servers, settings.topic(LOTS_SUBMITTED), len(acked)
    )
    missing = set(acked) - received
    assert not missing, f"{len(missing)} acknowledged events lost"
    assert len(acked) >= 3_000, f"only {len(acked)} acked, {failed} failed"
