"""C1: SIGKILL the vision process (consumer, workers and relay) in the middle of a consumer batch
of a 1,000-lot job submitted through ingest; start it again 5 s later.

To land the kill in the consumer's worst window every time (its batch committed in PostgreSQL,
its offsets not yet committed in Kafka), a deferred constraint trigger on ``vision_work`` (only
for this test's lots) makes the COMMIT of the consumer's batch wait for an advisory lock the
test holds once the job has more than ~300 work rows (vision's batches are capped at 50 records
here), and names the lot it holds in ``application_name``. The test SIGKILLs vision, then lets
the COMMIT finish: the batch's rows exist, but the dead consumer never committed its offsets, so
the new process gets those records again and must absorb them (ON CONFLICT).

Pass (reliability.md §7 C1): every lot completed exactly once and every webhook delivered
(checker I1-I7); the held batch was at or past the group's committed offsets at the kill and
its rows committed (Kafka redelivered at least one record, and the duplicate was absorbed);
answered vision calls <= 1,000 + the calls in flight at the kill (simulator call log minus
results PostgreSQL held).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest
from gen_common.events import LOTS_SUBMITTED

from tests.faults import history as h
from tests.faults.conftest import announce, whole_system
from tests.harness import checker
from tests.harness.processes import eventually

pytestmark = [pytest.mark.pg, pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(300)]
TOTAL = 1_000
KILL_AT = 300  # work rows of the job when the consumer's INSERT is held
DOWN_S = 5.0
LOCK = 4343
# Calls take a while, so that workers have calls in flight when the process dies.
SIM = {"latency": {"kinds": {"vision": {"dist": "uniform", "min_ms": 200, "max_ms": 600}}}}
# Batches of at most 50 records, so that ~300 rows are committed before the held batch.
OVERRIDES = {"vision": {"KAFKA__MAX_POLL_RECORDS": "50"}}


def hold_commit(tag: str) -> str:
    return f"""
CREATE FUNCTION c1_hold_{tag}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.lot_id #>> '{{}}' LIKE 'c1-{tag}-%'
       AND (SELECT count(*) FROM vision_work WHERE job_id = NEW.job_id) > {KILL_AT} THEN
        PERFORM set_config('application_name', 'c1-held:' || NEW.lot_seq, true);
        PERFORM pg_advisory_xact_lock_shared({LOCK});
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER c1_hold_{tag} AFTER INSERT ON vision_work
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION c1_hold_{tag}();
"""


async def test_vision_killed_mid_batch_redelivers_and_completes_each_lot_once(
    migrated: str, kafka_bootstrap: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    hook, done = f"/hook/c1/{tag}", f"/done/c1/{tag}"
    conn = await asyncpg.connect(migrated)
    try:
        await conn.execute(hold_commit(tag))
        await conn.execute("SELECT pg_advisory_lock($1)", LOCK)
        async with (
            whole_system(
                tmp_path / "system",
                db_url=migrated,
                bootstrap=kafka_bootstrap,
                sim_config=SIM,
                overrides=OVERRIDES,
            ) as system,
            httpx.AsyncClient(timeout=120) as http,
        ):
            lots = system.v1_lots(f"c1-{tag}", TOTAL, hook=hook)
            started = time.monotonic()
            answer = await system.client(http).generate(
                lots, ["en", "ru"], webhook_url=system.receiver.hook(done)
            )
            assert answer.status_code == 201, answer.text
            job_id = uuid.UUID(answer.json()["job_id"])

            held: list[asyncpg.Record] = []

            async def consumer_held() -> bool:
                held[:] = await conn.fetch(
                    """SELECT pid, application_name FROM pg_stat_activity
                       WHERE application_name LIKE 'c1-held:%' AND wait_event_type = 'Lock'"""
                )
                return bool(held)

            await eventually(consumer_held, timeout=60, interval=0.02)
            system.kill("vision")  # SIGKILL: consumer, workers and relay at once
            killed_at = time.monotonic()
            (row,) = held
            held_seq = int(row["application_name"].split(":")[1])
            group = system.kafka.topic("vision")
            committed = await h.committed_offsets(system.kafka.bootstrap_servers, group)
            # The held COMMIT goes through now; its client is gone, so no offset follows it.
            await conn.execute("SELECT pg_advisory_unlock($1)", LOCK)

            async def held_done() -> bool:
                return not await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", row["pid"]
                )

            await eventually(held_done, timeout=30)
            await conn.execute(f"DROP TRIGGER c1_hold_{tag} ON vision_work")
            work_rows = {
                r["lot_seq"]
                for r in await pool.fetch(
                    "SELECT lot_seq FROM vision_work WHERE job_id = $1", job_id
                )
            }
            results = await pool.fetchval(
                "SELECT count(*) FROM vision_results WHERE job_id = $1", job_id
            )
            unfinished = await pool.fetchval(
                "SELECT count(*) FROM vision_calls WHERE job_id = $1 AND finished_at IS NULL",
                job_id,
            )
            answered = checker.model_calls(system, job_id)["vision"]
            in_flight = answered - int(results)
            assert held_seq in work_rows, "the held batch committed after the kill"
            assert KILL_AT <= len(work_rows) < TOTAL, "the kill must land mid-stream"

            await asyncio.sleep(DOWN_S - (time.monotonic() - killed_at))  # the outage itself
            system.start("vision")
            await system.wait_ready(["vision"])
            restarted_s = time.monotonic() - killed_at

            expect = checker.Expect(
                job_id, 1, hook_path=hook, completion_path=done, in_flight=in_flight
            )
            found = await checker.settle(pool, system, expect, timeout=180)
            assert not found, found
            finished_s = time.monotonic() - started
            calls = checker.model_calls(system, job_id)
            topic = system.kafka.topic(LOTS_SUBMITTED)
            records = await h.read_lots(
                system.kafka.bootstrap_servers, topic, system.kafka.partitions
            )
            assert system.alive() == dict.fromkeys(system.children, True)
    finally:
        await conn.execute(f"DROP TRIGGER IF EXISTS c1_hold_{tag} ON vision_work")
        await conn.execute(f"DROP FUNCTION IF EXISTS c1_hold_{tag}()")
        await conn.close()

    at = {(e.job_id, e.lot_seq): where for where, e in records.items()}
    assert len(at) == TOTAL == len(records), "each lot published once by ingest"
    part, offset = at[(job_id, held_seq)]
    assert offset >= committed.get(part, 0), (
        f"lot {held_seq} at {part}/{offset} was committed ({committed}) before its rows were"
    )
    replayed = {seq for (job, seq), (p, o) in at.items() if o >= committed.get(p, 0)}
    absorbed = replayed & work_rows  # recorded before the kill and delivered again
    assert held_seq in absorbed
    announce(
        f"C1: killed vision at {len(work_rows)} work rows (held lot {held_seq} at "
        f"{part}/{offset}); Kafka offsets committed for {sum(committed.values())} records; "
        f"redelivered after the restart {len(replayed)}, of them already recorded (duplicates "
        f"absorbed) {len(absorbed)}; in flight at the "
        f"kill {in_flight} by the simulator log ({unfinished} unfinished vision_calls); vision "
        f"calls {calls['vision']} (bound {TOTAL + in_flight}), text calls {calls['text']}; "
        f"ready again {restarted_s:.1f}s after the kill; all {TOTAL} done and delivered in "
        f"{finished_s:.1f}s"
    )
