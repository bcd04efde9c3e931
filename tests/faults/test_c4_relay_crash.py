"""C4: SIGKILL the outbox relay process after it published a batch and before its DELETE
committed. The next relay publishes the batch again: every event is in Kafka twice, and the
consumer (effects keyed by event id) applies each once.

The relay deletes (and so locks) a batch's rows, publishes them, and commits after the acks. To
land the kill in that window every time, a deferred constraint trigger on ``outbox`` makes the
relay's COMMIT wait for an advisory lock the test holds: the batch is in Kafka, the DELETE not yet
committed (the test's own PostgreSQL cluster, so no other test sees the trigger).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import asyncpg
import pytest
from gen_common import kafka, outbox
from gen_common.events import LOTS_SUBMITTED, Event
from gen_common.settings import KafkaSettings
from gen_devstack import pg_local

from tests.faults import history as h
from tests.harness.processes import Child, child, eventually

pytestmark = [pytest.mark.pg, pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(180)]
TOTAL = 200
LOCK = 4242
HOLD_DELETE = f"""
CREATE TABLE faults_relay_killed ();
CREATE FUNCTION faults_hold_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared({LOCK});
    IF EXISTS (SELECT FROM faults_relay_killed) THEN
        RAISE EXCEPTION 'the relay was killed before its COMMIT';
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER faults_hold_delete AFTER DELETE ON outbox
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION faults_hold_delete();
"""


async def test_relay_killed_after_publish_duplicates_and_the_consumer_applies_once(
    own_pg: pg_local.Cluster, kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    settings = kafka_settings
    prefix, topic = settings.topic_prefix, settings.topic(LOTS_SUBMITTED)
    await kafka.ensure_topics(settings, [LOTS_SUBMITTED])
    hist = h.History()
    events: list[Event] = [h.lot(hist.job, seq) for seq in range(TOTAL)]
    hist.attempted = {e.event_id: seq for seq, e in enumerate(events)}
    hist.acked = set(hist.attempted)  # committed to the outbox = promised to be delivered
    env = h.consumer_env(settings, own_pg.url)
    conn = await asyncpg.connect(own_pg.url)
    pool = await asyncpg.create_pool(own_pg.url, min_size=0, max_size=2)
    try:
        await conn.execute(HOLD_DELETE)
        await conn.execute("SELECT pg_advisory_lock($1)", LOCK)
        async with conn.transaction():
            await outbox.add_many(conn, events)

        with child("tests.harness.counting_consumer", env, tmp_path / "consumer.log") as consumer:
            with child("tests.harness.relay_process", env, tmp_path / "relay-1.log") as relay:
                # Published (the consumer applied every event) and stuck in its COMMIT.
                await eventually(lambda: h.reached(pool, prefix, TOTAL, consumer), timeout=60)
                await eventually(lambda: _waiting_delete(conn, relay), timeout=30)
                relay.kill()
            # Its backend would still commit once the lock is free (the COMMIT was sent): the
            # trigger fails it instead, as if the relay had died before sending it.
            await conn.execute("INSERT INTO faults_relay_killed DEFAULT VALUES")
            await conn.execute("SELECT pg_advisory_unlock($1)", LOCK)
            await eventually(lambda: _unlocked_rows(conn, TOTAL), timeout=30)
            await conn.execute("DROP TRIGGER faults_hold_delete ON outbox")

            with child("tests.harness.relay_process", env, tmp_path / "relay-2.log") as relay:
                await eventually(lambda: _redelivered(pool, prefix, consumer), timeout=60)
                assert await conn.fetchval("SELECT count(*) FROM outbox") == 0
                assert relay.stop() == 0, "SIGTERM stops the relay cleanly"
            assert consumer.stop() == 0, "SIGTERM stops the consumer cleanly"

        copies = Counter(
            (await h.read_topic(settings.bootstrap_servers, topic, settings.partitions)).values()
        )
        assert copies == Counter({e.event_id: 2 for e in events}), "each event published twice"
        deliveries = await h.assert_exactly_once(pool, prefix, hist)
        assert set(deliveries.values()) == {2}, (
            "each duplicate reached the consumer and was absorbed"
        )
    finally:
        await pool.close()
        await conn.close()


async def _waiting_delete(conn: asyncpg.Connection, relay: Child) -> bool:
    h.assert_alive(relay, "before its COMMIT")
    waiting = await conn.fetchval(
        """SELECT count(*) FROM pg_stat_activity
           WHERE wait_event_type = 'Lock' AND query ILIKE 'COMMIT%'"""
    )
    return bool(waiting)


async def _unlocked_rows(conn: asyncpg.Connection, n: int) -> bool:
    free = await conn.fetchval(
        "SELECT count(*) FROM (SELECT id FROM outbox FOR UPDATE SKIP LOCKED) s"
    )
    return int(free) == n


async def _redelivered(pool: asyncpg.Pool, prefix: str, consumer: Child) -> bool:
    h.assert_alive(consumer, "while the relay republished")
    done = await pool.fetchval(
        "SELECT count(*) FROM test_effects WHERE prefix = $1 AND deliveries >= 2", prefix
    )
    return int(done) == TOTAL
