"""O4: malformed model output. Vision talks to the simulator through tests.harness.model_proxy,
which spoils the answers of chosen lots (marker in the lot's ``additional_info``): text cut in
half (invalid JSON), JSON missing a required field, an HTTP body that is not JSON; a fourth lot
gets the simulator's refusal. Eight ordinary lots share the job.

Pass: each spoiled lot fails with reason ``invalid_model_output`` after exactly
``invalid_output_attempts`` (3) model calls, its per-lot webhook (W2, with the error) and the job's
completion webhook are delivered, no process crashes or logs an error, the other lots complete.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.harness import checker, fault_run
from tests.harness.marks import SLOW_PROCESS_TEST
from tests.harness.model_proxy import BROKEN_BODY, INVALID_JSON, MISSING_FIELDS, ModelProxy
from tests.harness.system import announce, open_system

pytestmark = [*SLOW_PROCESS_TEST, pytest.mark.timeout(300)]
REFUSE = "[[refuse]]"  # the simulator's refusal_marker
SPOILED = {0: INVALID_JSON, 1: MISSING_FIELDS, 2: BROKEN_BODY, 3: REFUSE}
LOTS = 12
ATTEMPTS = 3


async def test_o4_malformed_output_fails_the_lot_after_max_attempts(
    migrated: str, kafka_bootstrap: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    async with (
        open_system(
            db_url=migrated,
            bootstrap=kafka_bootstrap,
            root=tmp_path,
            overrides={"vision": {"VISION__INVALID_OUTPUT_ATTEMPTS": str(ATTEMPTS)}},
        ) as system,
        httpx.AsyncClient(timeout=120) as http,
    ):
        with ModelProxy(system.sim.base_url) as proxy:
            await system.restart("vision", OPENAI__BASE_URL=proxy.base_url)
            job = await fault_run.submit(
                system,
                http,
                LOTS,
                languages=["en", "ru"],
                info=lambda i: f"lot {i} {SPOILED.get(i, '')}".strip(),
            )
            status = await fault_run.wait_final(system, http, job.job_id, timeout=150, pool=pool)
            expect = checker.Expect(
                job.job_id,
                job.non_en,
                hook_path=job.hook,
                completion_path=job.done,
                statuses=("completed", "failed"),
                in_flight=len(SPOILED) * (ATTEMPTS - 1),  # the retries of spoiled answers
            )
            found = await checker.settle(pool, system, expect, timeout=60)
            rewritten = dict(proxy.rewritten)
        lots = await pool.fetch(
            "SELECT lot_seq, status, error_code FROM lots WHERE job_id = $1 ORDER BY lot_seq",
            job.job_id,
        )
        calls = _vision_calls_per_lot(system.sim.admin.calls(), job.job_id)
        hooks = {
            lot["lot_id"]: lot
            for body in checker.w2_lots(system.receiver, job.hook).values()
            for lot in body
        }
        done = [r.json for r in system.receiver.snapshot() if r.path == job.done and r.answered]
        alive, errors = system.alive(), checker.log_errors(system, allowed=fault_run.STARTUP_NOISE)
        partial = await fault_run.partial_state(pool, job, system.kafka.topic_prefix)
        announce(
            "O4 malformed output",
            {
                "lots": {r["lot_seq"]: [r["status"], r["error_code"]] for r in lots},
                "vision_calls_per_lot": calls,
                "rewritten": rewritten,
                "job_status": status,
            },
        )
    assert not found, found
    assert not partial, partial
    assert all(alive.values()), f"a process exited: {alive}"
    assert not errors, errors[:5]
    for r in lots:
        if r["lot_seq"] in SPOILED:
            assert (r["status"], r["error_code"]) == ("failed", "invalid_model_output"), dict(r)
            assert calls[r["lot_seq"]] == ATTEMPTS, (r["lot_seq"], calls)
            entry = hooks[job.lot_ids[r["lot_seq"]]]
            assert entry["status"] == "failed"
            assert entry["error"]["code"] == "invalid_model_output"
        else:
            assert r["status"] == "completed", dict(r)
            assert calls[r["lot_seq"]] == 1, (r["lot_seq"], calls)
    assert rewritten == {INVALID_JSON: ATTEMPTS, MISSING_FIELDS: ATTEMPTS, BROKEN_BODY: ATTEMPTS}
    assert status == "completed"
    assert len(done) >= 1
    assert done[-1]["completed_lots"] == LOTS - len(SPOILED)
    assert done[-1]["failed_lots"] == len(SPOILED)


def _vision_calls_per_lot(calls: list[dict[str, object]], job_id: uuid.UUID) -> dict[int, int]:
    found: dict[int, int] = {}
    for call in calls:
        meta = call.get("metadata") or {}
        assert isinstance(meta, dict)
        if call.get("kind") == "vision" and meta.get("job_id") == str(job_id):
            seq = int(meta["lot_seq"])
            found[seq] = found.get(seq, 0) + 1
    return found
