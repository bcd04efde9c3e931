"""C2 on the Batch API path: SIGKILL the vision process while it applies a 1,000-lot batch.

A real ``python -m gen_vision`` with ``VISION__BATCH_MIN_LOTS=100``, so a 1,000-lot batch-mode job
goes to the Batch API engine (it packed two batches of 500 lines in every run so far). The
simulator's batch clock runs at ``CLOCK_SPEED`` times real time. The engine applies an output
file in chunks of ``APPLY_CHUNK`` lines; the process is killed once some lots of the job are
stored and others are not, and a second process (once the poll and claim leases expired)
finishes the job.

Image checks run 16 at a time (default 64): at 64, the Python image host of this test answered
too slowly on the loaded 2-core machine and 116-126 single-image lots failed image_unreachable
(3 s HEAD timeout); the same happened outside gen_vision (500 checks, ImageChecker + SafeClient).

Model calls on this path are batch input lines: every input file of every batch the simulator
received is read back. ``in_flight`` = lines submitted before the restart minus lots stored at
the kill (lines whose outcome had not landed). Pass: lines <= 1,000 + in_flight — and, as the
engine records every remote call, no line sent twice at all (exactly 1,000, one per lot); no
realtime call; every lot assessed exactly once (one result row ``via_batch``, lots row
'assessed', one LotAssessed event id per lot).
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from pathlib import Path

import asyncpg
import httpx
import pytest
from gen_common import kafka
from gen_common.events import (
    LOTS_ASSESSED,
    LOTS_FAILED,
    Event,
    LotAssessed,
    LotEvent,
    LotFailed,
)
from gen_common.settings import KafkaSettings
from openai_sim.process import RunningSim

from tests.harness.figures import report
from tests.harness.images import ImageHost
from tests.harness.marks import SLOW_PROCESS_TEST
from tests.harness.processes import child, eventually
from tests.harness.sigkill import sigkill_and_settle

from .lots import assessed_event_ids, failures, lot, lot_statuses, observe, work_statuses
from .vision_process import job_calls, vision_env

pytestmark = [*SLOW_PROCESS_TEST, pytest.mark.timeout(300)]
LOTS = 1_000
APPLY_CHUNK = 10
CLOCK_SPEED = 10.0
TOPICS: dict[str, type[Event]] = {LOTS_ASSESSED: LotAssessed, LOTS_FAILED: LotFailed}
BATCH_ENV = {
    "VISION__BATCH_MIN_LOTS": "100",
    "VISION__BATCH__SUBMIT_INTERVAL_S": "0.5",
    "VISION__BATCH__POLL_INTERVAL_S": "0.5",
    "VISION__BATCH__POLL_LEASE_S": "3",
    "VISION__BATCH__SUBMIT_LEASE_S": "3",
    "VISION__BATCH__CLAIM_LEASE_S": "30",
    "VISION__BATCH__APPLY_CHUNK": str(APPLY_CHUNK),
    "VISION__BATCH__RETRY_DELAYS_S": "[1, 2, 5]",
    "VISION__IMAGES": '{"ssrf": {"allow_cidrs": ["127.0.0.0/8"]}, "concurrency": 16}',
}


async def submitted_lines(sim: RunningSim, job: uuid.UUID) -> list[int]:
    """lot_seq of every input line of every batch the simulator received for the job."""
    seqs: list[int] = []
    headers = {"authorization": "Bearer sk-test"}
    async with httpx.AsyncClient(base_url=sim.base_url, headers=headers, timeout=30) as http:
        listing = (await http.get("/batches", params={"limit": 100})).json()
        assert listing["has_more"] is False
        for batch in listing["data"]:
            content = await http.get(f"/files/{batch['input_file_id']}/content")
            for raw in content.text.splitlines():
                if not raw.strip():
                    continue
                metadata = json.loads(raw)["body"]["metadata"]
                if metadata["job_id"] == str(job):
                    seqs.append(int(metadata["lot_seq"]))
    return seqs


async def test_sigkill_while_applying_a_1000_lot_batch_every_lot_once(
    pool: asyncpg.Pool,
    migrated: str,
    kafka_settings: KafkaSettings,
    sim: RunningSim,
    tmp_path: Path,
    unique: str,
) -> None:
    sim.admin.clock(speed=CLOCK_SPEED)
    await kafka.ensure_topics(kafka_settings)
    env = vision_env(migrated, kafka_settings, sim, VISION__WORKERS="4", **BATCH_ENV)
    log = tmp_path / "vision.log"
    job = uuid.uuid4()
    began = time.monotonic()

    async def results() -> int:
        return int(
            await pool.fetchval(
                "SELECT count(*) FROM vision_results WHERE job_id = $1 AND via_batch", job
            )
        )

    async def applying() -> bool:
        return 0 < await results() < LOTS // 2

    # A threaded image host: the image checks of 1,000 lots must not wait for this event loop.
    with ImageHost() as host:
        image = host.ok(unique)
        events = [lot(job, i, [image], mode="batch", total=LOTS) for i in range(LOTS)]
        async with observe(kafka_settings, pool, TOPICS) as seen:
            with child("gen_vision", env, log) as first:
                async with kafka.open_publisher(kafka_settings) as publisher:
                    await publisher.publish_many(events)
                await eventually(applying, timeout=120, interval=0.02)
                await sigkill_and_settle(pool, first)
            stored_at_kill = await results()
            lines_before_restart = len(await submitted_lines(sim, job))
            restarted = time.monotonic()
            with child("gen_vision", env, log):

                async def finished() -> bool:
                    ours = [e for e in seen if isinstance(e, LotEvent) and e.job_id == job]
                    keys = {e.lot_key for e in ours}
                    if any(isinstance(e, LotFailed) for e in ours):
                        return len(keys) == LOTS  # fail fast, below
                    return len(keys) == LOTS and await results() == LOTS

                await eventually(finished, timeout=180, interval=0.2)
            restart_to_done = time.monotonic() - restarted

    lines = await submitted_lines(sim, job)
    per_lot = Counter(lines)
    event_ids = assessed_event_ids(seen, job)
    batches = await pool.fetch(
        "SELECT status, line_count FROM openai_batches WHERE stage = 'vision' AND job_id = $1",
        str(job),
    )
    in_flight = lines_before_restart - stored_at_kill
    figures = {
        "lots": LOTS,
        "apply_chunk": APPLY_CHUNK,
        "stored_at_kill": stored_at_kill,
        "lines_before_restart": lines_before_restart,
        "in_flight_lines_at_kill": in_flight,
        "batch_lines_submitted": len(lines),
        "batches": [(r["status"], r["line_count"]) for r in batches],
        "realtime_calls": len(job_calls(sim, job)),
        "lot_assessed_records": sum(isinstance(e, LotAssessed) and e.job_id == job for e in seen),
        "restart_to_done_s": round(restart_to_done, 1),
        "total_s": round(time.monotonic() - began, 1),
    }
    report(tmp_path, "c2-batch", figures)

    failed = failures(seen, job)
    assert failed == [], failed[:3]
    assert 0 < stored_at_kill < LOTS, figures  # killed mid-apply
    assert len(lines) <= LOTS + in_flight, figures
    assert len(lines) == LOTS, figures  # no line sent twice
    assert sorted(per_lot) == list(range(LOTS))
    assert figures["realtime_calls"] == 0, figures
    assert {r["status"] for r in batches} == {"finished"}, figures
    assert len(event_ids) == LOTS
    assert all(len(ids) == 1 for ids in event_ids.values()), figures
    assert await work_statuses(pool, job) == {"done": LOTS}
    paths = await pool.fetch("SELECT DISTINCT path FROM vision_work WHERE job_id = $1", job)
    assert [r["path"] for r in paths] == ["batch"]
    assert await lot_statuses(pool, job) == {"assessed": LOTS}
