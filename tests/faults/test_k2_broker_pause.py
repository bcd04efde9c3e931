"""K1/K2: SIGSTOP the broker (every node of it) for longer than the consumer session timeout
while a counting_consumer process consumes and an ``acks=all`` producer sends; then SIGCONT.

Pass: the consumer process stays up and rejoins its group (new member id), finishes the
stream, and every acknowledged event is applied exactly once.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from gen_common import kafka
from gen_common.events import LOTS_SUBMITTED
from gen_common.settings import KafkaSettings
from gen_devstack import kafka_local

from tests.faults import history as h
from tests.faults.conftest import announce
from tests.harness import counting_consumer
from tests.harness.processes import child, eventually

pytestmark = [pytest.mark.pg, pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(240)]
TOTAL = 2_000
SESSION_MS = 10_000
PAUSE_S = 15.0  # > SESSION_MS


async def test_consumer_rejoins_after_a_broker_pause_and_applies_each_event_once(
    kafka_single: kafka_local.Cluster,
    pool: asyncpg.Pool,
    migrated: str,
    unique: str,
    tmp_path: Path,
) -> None:
    settings = KafkaSettings(
        bootstrap_servers=kafka_single.bootstrap_servers,
        topic_prefix=f"k2{unique}.",
        partitions=3,
        session_timeout_ms=SESSION_MS,
    )
    prefix, group = settings.topic_prefix, settings.topic("counter")
    await pool.execute(counting_consumer.TABLE)
    await kafka.ensure_topics(settings, [LOTS_SUBMITTED])
    hist = h.History()
    log = tmp_path / "consumer.log"
    env = h.consumer_env(settings, migrated, KAFKA__MAX_POLL_RECORDS="100")

    async with kafka.open_publisher(settings) as publisher:
        with child("tests.harness.counting_consumer", env, log) as consumer:
            sender = asyncio.create_task(hist.produce(publisher, TOTAL, pace_s=0.05))
            await eventually(lambda: h.reached(pool, prefix, 300, consumer), timeout=90)
            members_before = await _members(settings.bootstrap_servers, group)
            for node in kafka_single.members:
                kafka_single.signal(node, signal.SIGSTOP)
            try:
                paused_at = await h.applied(pool, prefix)
                await asyncio.sleep(PAUSE_S)  # the fault itself: a pause past the session
            finally:
                for node in kafka_single.members:
                    kafka_single.signal(node, signal.SIGCONT)
            assert consumer.proc is not None
            assert consumer.proc.poll() is None, "the consumer exited during the pause"
            await sender
            await eventually(lambda: h.reached(pool, prefix, len(hist.acked), consumer), timeout=90)
            members_after = await _members(settings.bootstrap_servers, group)
            assert consumer.proc.poll() is None, "the consumer exited after the pause"
            assert consumer.stop() == 0, "SIGTERM stops the consumer cleanly"

    assert paused_at < len(hist.acked), "the pause must land mid-stream"
    assert len(members_after) == 1
    assert members_after != members_before, "the consumer never had to rejoin"
    deliveries = await h.assert_exactly_once(pool, prefix, hist)
    assert len(hist.acked) == TOTAL, f"{hist.failed} publishes failed"
    redelivered = sum(1 for n in deliveries.values() if n > 1)
    announce(f"K2: paused {PAUSE_S}s at {paused_at} applied; redelivered {redelivered}")


async def _members(bootstrap: str, group: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    [described] = response.groups
    return {member[0] for member in described[5]}
