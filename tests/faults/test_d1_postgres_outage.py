"""D1: PostgreSQL ``stop -m immediate`` for 15 s under a consuming counting_consumer process:
10 s without a server, then 5 s of recovery that refuses connections (57P03).

The consumer must not commit offsets for rows it could not write, must recover by itself (its
asyncpg pool reconnects; no process restart) once the same cluster is back on the same port and
data directory, and every event must end applied exactly once.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import asyncpg
import pytest
from gen_common import kafka
from gen_common.events import LOTS_SUBMITTED
from gen_common.settings import KafkaSettings
from gen_devstack import pg_local

from tests.faults import history as h
from tests.faults.conftest import restart_through_recovery
from tests.harness.processes import child, eventually

pytestmark = [pytest.mark.pg, pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(180)]
DOWN_S = 10.0  # no server: connections refused
RECOVERING_S = 5.0  # server back but in recovery: 57P03 on every connection


async def test_consumer_survives_a_postgres_crash_and_applies_each_event_once(
    own_pg: pg_local.Cluster, kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    settings = kafka_settings
    prefix, topic = settings.topic_prefix, settings.topic(LOTS_SUBMITTED)
    await kafka.ensure_topics(settings, [LOTS_SUBMITTED])
    hist = h.History()
    env = h.consumer_env(settings, own_pg.url, KAFKA__MAX_POLL_RECORDS="50")
    log = tmp_path / "consumer.log"
    pool = await asyncpg.create_pool(own_pg.url, min_size=0, max_size=2)
    try:
        async with kafka.open_publisher(settings) as publisher:
            await hist.produce(publisher, 1_500, batch=250, pace_s=0)
            with child("tests.harness.counting_consumer", env, log) as consumer:
                await eventually(lambda: h.reached(pool, prefix, 300, consumer), timeout=60)
                # Stop PostgreSQL mid-stream; keep producing while it is down.
                await asyncio.to_thread(own_pg.stop, "immediate")
                await pool.expire_connections()
                down_at = asyncio.get_running_loop().time()
                await hist.produce(publisher, 1_500, batch=250, pace_s=0)
                await asyncio.sleep(DOWN_S - (asyncio.get_running_loop().time() - down_at))
                assert consumer.proc is not None
                assert consumer.proc.poll() is None, "the consumer exited while the DB was down"

                # No offset may be committed for a record whose effect PostgreSQL did not hold
                # when it went down (commit timestamps tell pre-crash rows from later ones).
                committed = await h.committed_offsets(
                    settings.bootstrap_servers, prefix + "counter"
                )
                # Same port, same data directory.
                await asyncio.to_thread(restart_through_recovery, own_pg, refusing_s=RECOVERING_S)
                h.assert_alive(consumer, "while PostgreSQL was recovering")
                before_crash = await _committed_before_restart(pool, prefix)
                records = await h.read_topic(settings.bootstrap_servers, topic, settings.partitions)
                below = {
                    event_id
                    for (part, offset), event_id in records.items()
                    if offset < committed.get(part, 0)
                }
                assert below, "the consumer committed nothing before the outage"
                assert below <= before_crash, (
                    f"{len(below - before_crash)} offsets committed for unwritten rows"
                )
                assert len(before_crash) < len(hist.acked), "the outage must land mid-stream"

                await eventually(
                    lambda: h.reached(pool, prefix, len(hist.acked), consumer), timeout=90
                )
                assert consumer.proc.poll() is None, "the consumer was restarted"
                assert consumer.stop() == 0, "SIGTERM stops the consumer cleanly"
        consumer_log = log.read_text()
        assert "batch failed, rewinding" in consumer_log, "the outage never hit a batch"
        assert "CannotConnectNowError" in consumer_log, "the consumer never met the recovery"
        assert len(hist.acked) == 3_000, f"{hist.failed} publishes failed"
        deliveries = await h.assert_exactly_once(pool, prefix, hist)
        assert len(deliveries) == 3_000
    finally:
        await pool.close()


async def _committed_before_restart(pool: asyncpg.Pool, prefix: str) -> set[uuid.UUID]:
    rows = await pool.fetch(
        """SELECT event_id FROM test_effects WHERE prefix = $1
             AND pg_xact_commit_timestamp(xmin) < pg_postmaster_start_time()""",
        prefix,
    )
    return {r["event_id"] for r in rows}
