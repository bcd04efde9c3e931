"""K1/K2: SIGSTOP the broker (the single node, or all three nodes) for longer than the consumer
session timeout while a counting_consumer process consumes and an ``acks=all`` producer sends;
then SIGCONT.

Pass: the consumer process stays up, the group ends with exactly one member (its own), it
finishes the stream, and every acknowledged event is applied exactly once. Whether the broker
expires the member on resume is a race inside the broker (a queued heartbeat may land before the
session timer fires); the test reports which happened (a new member id means it rejoined).
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


@pytest.mark.parametrize("nodes", [1, 3], ids=["single-node", "three-nodes"])
async def test_consumer_rejoins_after_a_broker_pause_and_applies_each_event_once(
    nodes: int,
    request: pytest.FixtureRequest,
    pool: asyncpg.Pool,
    migrated: str,
    unique: str,
    tmp_path: Path,
) -> None:
    cluster: kafka_local.Cluster = request.getfixturevalue(
        "kafka_single" if nodes == 1 else "kafka_trio"
    )
    settings = KafkaSettings(
        bootstrap_servers=cluster.bootstrap_servers,
        topic_prefix=f"k2{unique}.",
        partitions=3,
        replication_factor=min(nodes, 3),
        min_insync_replicas=min(nodes, 2),
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
            try:
                await eventually(lambda: h.reached(pool, prefix, 300, consumer), timeout=90)
                members_before = await _members(settings.bootstrap_servers, group)
                for node in cluster.members:
                    cluster.signal(node, signal.SIGSTOP)
                try:
                    paused_at = await h.applied(pool, prefix)
                    await asyncio.sleep(PAUSE_S)  # the fault itself: a pause past the session
                finally:
                    for node in cluster.members:
                        cluster.signal(node, signal.SIGCONT)
                assert consumer.proc is not None
                assert consumer.proc.poll() is None, "the consumer exited during the pause"
                await sender
            finally:
                sender.cancel()  # only still running if the test failed
            await eventually(lambda: h.reached(pool, prefix, len(hist.acked), consumer), timeout=90)
            members_after = await _members(settings.bootstrap_servers, group)
            assert consumer.proc.poll() is None, "the consumer exited after the pause"
            assert consumer.stop() == 0, "SIGTERM stops the consumer cleanly"

    assert paused_at < len(hist.acked), "the pause must land mid-stream"
    assert len(members_after) == 1, f"one consumer, {len(members_after)} group members"
    deliveries = await h.assert_exactly_once(pool, prefix, hist)
    assert len(hist.acked) == TOTAL, f"{hist.failed} publishes failed"
    redelivered = sum(1 for n in deliveries.values() if n > 1)
    rejoined = members_after != members_before  # the broker may or may not expire the member
    announce(
        f"K2 x{nodes}: paused {PAUSE_S}s at {paused_at} applied; rejoined {rejoined}; "
        f"redelivered {redelivered}"
    )


async def _members(bootstrap: str, group: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    [described] = response.groups
    return {member[0] for member in described[5]}
