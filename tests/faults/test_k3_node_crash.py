"""K3: SIGKILL one node of a 3-node KRaft cluster (RF 3, ``min.insync.replicas=2``) while an
``acks=all`` producer sends and a counting_consumer process consumes; restart the node.

Pass: every acknowledged event is applied exactly once, production and consumption go on while
the node is down, and the consumer process never exits.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from gen_common import kafka
from gen_common.events import LOTS_SUBMITTED
from gen_common.settings import KafkaSettings
from gen_devstack import kafka_local

from tests.faults import history as h
from tests.faults.conftest import announce
from tests.harness import counting_consumer
from tests.harness.processes import child, eventually

pytestmark = [pytest.mark.pg, pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(240)]
TOTAL = 3_000


async def test_acknowledged_events_survive_a_node_crash_and_apply_once(
    kafka_trio: kafka_local.Cluster,
    pool: asyncpg.Pool,
    migrated: str,
    unique: str,
    tmp_path: Path,
) -> None:
    settings = KafkaSettings(
        bootstrap_servers=kafka_trio.bootstrap_servers,
        topic_prefix=f"k3{unique}.",
        partitions=3,
        replication_factor=3,
        min_insync_replicas=2,
        request_timeout_ms=15_000,
    )
    prefix, group = settings.topic_prefix, settings.topic("counter")
    topic = settings.topic(LOTS_SUBMITTED)
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
                victim = await _coordinator(kafka_trio, group)
                kafka_trio.kill(victim)  # SIGKILL the group coordinator's node mid-stream
                killed_at = time.monotonic()
                # The cluster fences it: leaders, ISRs and the coordinator move to the other two.
                await eventually(lambda: _fenced(kafka_trio, topic, group, victim), timeout=60)
                fenced_s = time.monotonic() - killed_at
                acked, done = len(hist.acked), await h.applied(pool, prefix)
                assert acked + 300 <= TOTAL, "the producer finished before the node was fenced"
                # Two nodes keep the quorum and the ISR minimum: both sides go on without it.
                await eventually(lambda: _more(hist, acked + 300), timeout=60)
                await eventually(lambda: h.reached(pool, prefix, done + 300, consumer), timeout=60)
                down_s = time.monotonic() - killed_at
                h.assert_alive(consumer, "after the fault")
                await asyncio.to_thread(kafka_trio.restart, victim)
                await sender
            finally:
                sender.cancel()  # only still running if the test failed
            await eventually(lambda: h.reached(pool, prefix, len(hist.acked), consumer), timeout=90)
            h.assert_alive(consumer, "after the fault")
            assert consumer.stop() == 0, "SIGTERM stops the consumer cleanly"

    assert hist.acked, "nothing was acknowledged"
    deliveries = await h.assert_exactly_once(pool, prefix, hist)
    redelivered = sum(1 for n in deliveries.values() if n > 1)
    announce(
        f"K3: node {victim.node_id} down {down_s:.1f}s (fenced after {fenced_s:.1f}s); "
        f"acked {len(hist.acked)}/{TOTAL}, failed {hist.failed}, redelivered {redelivered}"
    )
    assert len(hist.acked) >= TOTAL * 0.95, f"{hist.failed} of {TOTAL} publishes failed"


async def _coordinator(cluster: kafka_local.Cluster, group: str) -> kafka_local.Node:
    admin = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap_servers)
    await admin.start()
    try:
        node_id = await admin.find_coordinator(group)
    finally:
        await admin.close()
    return next(n for n in cluster.members if n.node_id == node_id)


async def _fenced(
    cluster: kafka_local.Cluster, topic: str, group: str, victim: kafka_local.Node
) -> bool:
    """No partition of ``topic`` led by ``victim`` or holding it in its ISR, and the group's
    coordinator elsewhere."""
    admin = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap_servers)
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
        coordinator = await admin.find_coordinator(group)
    except KafkaError:  # e.g. the request went to the dead node; ask again
        return False
    finally:
        await admin.close()
    partitions = described["partitions"]
    assert partitions, f"no metadata for {topic}"
    return coordinator != victim.node_id and all(
        p["leader"] not in (-1, victim.node_id) and victim.node_id not in p["isr"]
        for p in partitions
    )


async def _more(hist: h.History, n: int) -> bool:
    return len(hist.acked) >= n
