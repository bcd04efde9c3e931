"""K1: SIGSTOP every node of the system's Kafka cluster (three KRaft nodes, topics RF 3 with
``min.insync.replicas=2``) for 30 s while a 500-lot job is in flight and batch jobs keep being
submitted through ingest's HTTP API; then SIGCONT.

Ingest has no outbox for submissions: a batch job is answered 201 only once every lot event is
acknowledged by Kafka (acks=all), and 503 with the job aborted when that has not happened within
``INGEST__PUBLISH_TIMEOUT_S`` (issue 4). So every submission is answered within that deadline
(plus the request's own work): either 201, and the job completes, or 503, and no lot of that job
is ever processed (its records still reach Kafka after SIGCONT; vision skips aborted jobs); never
a 5xx other than 503, never a half-created job. A submission sent in the first 20 s of the pause
cannot be acknowledged in time, so the pause produces 503s. The stages' outbox rows (vision and
translate results) pile up while the relays cannot publish.

Pass (reliability.md §7 K1): ingest's /health keeps answering during the pause; no process
exits; the relay backlog (outbox rows written before SIGCONT) drains to 0 within 60 s after
SIGCONT; every accepted job and the 500-lot job complete with their webhooks (checker I1-I7).
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
from gen_devstack import kafka_local

from tests.faults.conftest import announce, whole_system
from tests.harness import checker
from tests.harness.processes import eventually
from tests.harness.system import System

pytestmark = [pytest.mark.pg, pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(360)]
BIG = 500
SMALL = 5  # lots per job submitted during the fault
PAUSE_S = 30.0
DRAIN_LIMIT_S = 60.0
LANGUAGES = ["en", "ru"]
PUBLISH_TIMEOUT_S = 10.0
ANSWER_SLACK_S = 8.0  # parsing, PostgreSQL and the abort on a loaded 2-core machine
SIM = {"latency": {"kinds": {"vision": {"dist": "uniform", "min_ms": 300, "max_ms": 700}}}}


@dataclass
class Submission:
    tag: str
    lots: list[str]
    sent_at: float
    status: int | None = None
    job_id: uuid.UUID | None = None
    seconds: float = 0.0
    body: str = ""


async def submit(system: System, http: httpx.AsyncClient, total: int) -> Submission:
    tag = uuid.uuid4().hex[:8]
    lots = system.v1_lots(f"k1-{tag}", total, hook=f"/hook/k1/{tag}")
    sub = Submission(tag, [lot["lot_id"] for lot in lots], time.monotonic())
    answer = await system.client(http).generate(
        lots, LANGUAGES, webhook_url=system.receiver.hook(f"/done/k1/{tag}")
    )
    sub.status, sub.body = answer.status_code, answer.text[:300]
    sub.seconds = time.monotonic() - sub.sent_at
    if answer.status_code == 201:
        sub.job_id = uuid.UUID(answer.json()["job_id"])
    return sub


def expect(sub: Submission) -> checker.Expect:
    assert sub.job_id is not None
    return checker.Expect(
        sub.job_id,
        len(LANGUAGES) - 1,
        hook_path=f"/hook/k1/{sub.tag}",
        completion_path=f"/done/k1/{sub.tag}",
    )


async def test_broker_pause_ingest_answers_backlog_drains_and_every_job_completes(
    kafka_trio: kafka_local.Cluster, migrated: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    cluster = kafka_trio
    test_start = await pool.fetchval("SELECT now()")
    async with (
        whole_system(
            tmp_path / "system",
            db_url=migrated,
            bootstrap=cluster.bootstrap_servers,
            sim_config=SIM,
            overrides={"ingest": {"INGEST__PUBLISH_TIMEOUT_S": str(PUBLISH_TIMEOUT_S)}},
            replication=3,
        ) as system,
        httpx.AsyncClient(timeout=180) as http,
    ):
        big = await submit(system, http, BIG)
        assert big.status == 201, big.body
        assert big.job_id is not None

        async def flowing() -> bool:
            n = await pool.fetchval(
                "SELECT count(*) FROM lots WHERE job_id = $1 AND status = 'completed'",
                big.job_id,
            )
            return int(n) >= 20

        await eventually(flowing, timeout=60, interval=0.2)
        in_flight = BIG - int(
            await pool.fetchval(
                "SELECT count(*) FROM lots WHERE job_id = $1 AND status = 'completed'",
                big.job_id,
            )
        )
        stop = asyncio.Event()
        submissions: list[asyncio.Task[Submission]] = []
        health: list[tuple[int, float]] = []
        backlog: list[int] = []

        async def keep_submitting() -> None:
            while not stop.is_set():
                submissions.append(asyncio.create_task(submit(system, http, SMALL)))
                await asyncio.sleep(1.0)

        async def watch() -> None:
            while True:
                began = time.monotonic()
                try:
                    code = (await http.get(f"{system.ingest_url}/health", timeout=5)).status_code
                except httpx.HTTPError:
                    code = 0
                health.append((code, time.monotonic() - began))
                backlog.append(await _outbox(pool, test_start))
                await asyncio.sleep(0.5)

        submitter = asyncio.create_task(keep_submitting())
        watcher = asyncio.create_task(watch())
        try:
            await asyncio.sleep(2)  # submissions before the pause
            for node in cluster.members:
                cluster.signal(node, signal.SIGSTOP)
            paused_at = time.monotonic()
            try:
                await asyncio.sleep(PAUSE_S)  # the fault itself
                alive_during = system.alive()
                health_during = list(health)
            finally:
                for node in cluster.members:
                    cluster.signal(node, signal.SIGCONT)
            resumed = await pool.fetchval("SELECT now()")
            resumed_at = time.monotonic()
            peak = max(backlog)

            async def drained() -> bool:
                return await _outbox(pool, test_start, before=resumed) == 0

            await eventually(drained, timeout=DRAIN_LIMIT_S, interval=0.2)
            drain_s = time.monotonic() - resumed_at
            await asyncio.sleep(5)  # submissions after the pause
        finally:
            stop.set()
            await submitter
            watcher.cancel()
        subs = [await task for task in submissions]
        answered_s = time.monotonic() - resumed_at

        accepted = [big] + [s for s in subs if s.status == 201]
        refused = [s for s in subs if s.status != 201]
        found = await checker.settle_all(pool, system, [expect(s) for s in accepted], timeout=180)
        settled_s = time.monotonic() - resumed_at
        assert not found, found
        for sub in refused:  # no half-created job: none of its lots was ever taken up
            assert sub.status == 503, (sub.status, sub.body)
            assert '"error"' in sub.body, sub.body
            lot_ids = [f'"{lot}"' for lot in sub.lots]
            for table in ("lots", "vision_work"):
                n = await pool.fetchval(
                    f"SELECT count(*) FROM {table} WHERE lot_id = ANY($1::jsonb[])", lot_ids
                )
                assert n == 0, f"{n} {table} rows of a refused submission exist"
        alive_after = system.alive()
        commit_failed = {
            n: _count(system, n, "CommitFailedError") for n in ("vision", "translate", "notifier")
        }

    everyone = dict.fromkeys(alive_after, True)
    assert alive_during == everyone, f"a process exited during the pause: {alive_during}"
    assert alive_after == everyone, f"a process exited after the pause: {alive_after}"
    during = [h for h in health_during if h[0] != 0]
    assert all(code == 200 for code, _ in health_during), health_during
    assert peak > 0, "the relays never had a backlog: the pause landed after the work"
    paused_subs = [s for s in subs if paused_at <= s.sent_at < resumed_at]
    assert paused_subs, "no submission was made during the pause"
    late = [round(s.seconds, 1) for s in subs if s.seconds > PUBLISH_TIMEOUT_S + ANSWER_SLACK_S]
    assert not late, f"submissions answered after the publish deadline: {late}"
    # Sent early enough that the deadline passed while the broker was still paused: 503.
    early = [s for s in paused_subs if s.sent_at < resumed_at - PUBLISH_TIMEOUT_S - ANSWER_SLACK_S]
    assert early, "no submission was made early in the pause"
    assert all(s.status == 503 for s in early), [(s.status, s.seconds) for s in early]
    announce(
        f"K1: 3 nodes paused {PAUSE_S:.0f}s with {in_flight} of {BIG} lots in flight; "
        f"ingest /health during the pause: {len(during)} answers, max "
        f"{max(s for _, s in during):.3f}s; submissions {len(subs)}: "
        f"{sum(s.status == 201 for s in subs)} x 201, "
        f"{sorted({s.status or 0 for s in refused})} refused; submissions sent during the "
        f"pause answered after {[round(s.seconds, 1) for s in paused_subs]}s with "
        f"{sorted({s.status or 0 for s in paused_subs})}; relay backlog peak {peak} rows, "
        f"drained {drain_s:.1f}s after SIGCONT; every submission answered {answered_s:.1f}s and "
        f"every job complete and checked {settled_s:.1f}s after SIGCONT; CommitFailedError "
        f"lines {commit_failed}"
    )


async def _outbox(pool: asyncpg.Pool, since: object, before: object = None) -> int:
    """Outbox rows this test's system wrote (before ``before``, if given)."""
    n = await pool.fetchval(
        "SELECT count(*) FROM outbox WHERE created_at >= $1 "
        "AND ($2::timestamptz IS NULL OR created_at < $2)",
        since,
        before,
    )
    return int(n)


def _count(system: System, name: str, needle: str) -> int:
    path = system.log(name)
    return path.read_text(errors="replace").count(needle) if path.exists() else 0
