"""O3: 20 % of the simulator's ``/v1/responses`` calls hang (the simulator answers only after the
client hung up). The services' OpenAI timeout is 5 s here (``OPENAI__TIMEOUT_S``; the catalogue's
120 s is the production value), SDK retries off, so each hang costs one timed-out call.

Pass: every hung call ends at the configured timeout ± 1 s, measured from the simulator's arrival
time of the call to vision's call-log row for it (``vision_calls.finished_at``, outcome not ok) or
to translate's "translation will be retried" log line; each is retried; every lot completes;
model calls per (lot, kind, language) are exactly one answered call plus the hung ones (I6:
duplicates only from timeouts).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.harness import checker, fault_run
from tests.harness.system import System, announce, open_system

pytestmark = [pytest.mark.pg, pytest.mark.kafka, pytest.mark.e2e, pytest.mark.slow]
TIMEOUT_S = 5.0
HANG = 0.2
LOTS = 30
OPENAI = {"OPENAI__TIMEOUT_S": str(TIMEOUT_S), "OPENAI__MAX_RETRIES": "0"}


@pytest.mark.timeout(360)
async def test_o3_hung_calls_end_at_the_timeout_and_are_retried(
    migrated: str, kafka_bootstrap: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    sim = {"seed": 3, "faults": {"hang": HANG, "endpoints": ["responses"]}}
    async with (
        open_system(
            db_url=migrated,
            bootstrap=kafka_bootstrap,
            root=tmp_path,
            sim_config=sim,
            overrides={"vision": OPENAI, "translate": OPENAI},
        ) as system,
        httpx.AsyncClient(timeout=120) as http,
    ):
        job = await fault_run.submit(system, http, LOTS, languages=["en", "ru"])
        status = await fault_run.wait_final(system, http, job.job_id, timeout=240, pool=pool)
        calls = [c for c in system.sim.admin.calls() if _job(c) == str(job.job_id)]
        hung = [c for c in calls if c.get("fault") == "hang"]
        found = await checker.settle(
            pool,
            system,
            checker.Expect(
                job.job_id,
                job.non_en,
                hook_path=job.hook,
                completion_path=job.done,
                in_flight=len(hung),
            ),
            timeout=60,
        )
        vision_rows = await pool.fetch(
            """SELECT lot_seq, outcome, extract(epoch FROM finished_at - started_at) AS took,
                      extract(epoch FROM finished_at)::float8 AS ended
               FROM vision_calls WHERE job_id = $1 ORDER BY finished_at""",
            job.job_id,
        )
        text_ends = _retry_times(system)
        errors = checker.log_errors(system, allowed=fault_run.STARTUP_NOISE)
        alive = system.alive()

    per_key = Counter(_key(c) for c in calls)
    answered = Counter(_key(c) for c in calls if c.get("fault") != "hang")
    timed_out = [float(r["took"]) for r in vision_rows if r["outcome"] != "ok"]
    hung_vision = [c for c in hung if c.get("kind") == "vision"]
    # From the simulator's arrival time to vision's call-log update: without the call-log
    # INSERT's own commit before the call, which a loaded box stretches.
    vision_took = [
        took
        for seq in {str(r["lot_seq"]) for r in vision_rows}
        for took in _match(
            sorted(float(c["time"]) for c in hung_vision if _key(c)[1] == seq),
            [r["ended"] for r in vision_rows if str(r["lot_seq"]) == seq and r["outcome"] != "ok"],
        )
    ]
    ok_took = [float(r["took"]) for r in vision_rows if r["outcome"] == "ok"]
    hung_text = sorted(float(c["time"]) for c in hung if c.get("kind") == "text")
    text_took = _match(hung_text, text_ends)
    announce(
        "O3 hanging calls",
        {
            "timeout_s": TIMEOUT_S,
            "calls": len(calls),
            "hung": {"vision": len(hung_vision), "text": len(hung_text)},
            "vision_call_log_s": [round(t, 2) for t in sorted(timed_out)],
            "vision_timed_out_s": [round(t, 2) for t in sorted(vision_took)],
            "vision_ok_max_s": round(max(ok_took, default=0), 2),
            "text_timed_out_s": [round(t, 2) for t in text_took],
            "max_calls_per_key": max(per_key.values(), default=0),
        },
    )
    assert status == "completed"
    assert not found, found
    assert all(alive.values()), f"a process exited: {alive}"
    assert not errors, errors[:5]
    assert len(hung) >= 5, f"too few hangs to judge: {len(hung)} of {len(calls)} calls"
    # Every key answered once; every extra call is a hung one (I6: duplicates only from timeouts).
    assert set(answered.values()) == {1}, answered
    assert set(per_key) == set(answered)
    # Vision: each hung call is a call-log row that ended at the timeout, and nothing else did.
    assert len(timed_out) == len(hung_vision), (timed_out, len(hung_vision))
    assert len(vision_took) == len(hung_vision), (vision_took, len(hung_vision))
    assert all(TIMEOUT_S - 1 <= t <= TIMEOUT_S + 1 for t in vision_took), vision_took
    assert all(t < TIMEOUT_S - 1 for t in ok_took), max(ok_took)
    # Translation: each hung call has its "will be retried" line TIMEOUT_S ± 1 s after it arrived.
    assert len(text_took) == len(hung_text), (hung_text, text_ends)
    assert all(TIMEOUT_S - 1 <= t <= TIMEOUT_S + 1 for t in text_took), text_took


def _job(call: dict[str, Any]) -> str | None:
    return (call.get("metadata") or {}).get("job_id")


def _key(call: dict[str, Any]) -> tuple[str, str, str]:
    meta = call.get("metadata") or {}
    return (str(call.get("kind")), str(meta.get("lot_seq")), str(meta.get("target_language")))


def _retry_times(system: System) -> list[float]:
    """When translate gave up on a call for a timeout (epoch seconds of its log lines)."""
    return sorted(
        datetime.fromisoformat(str(line["ts"])).timestamp()
        for line in system.log_lines("translate")
        if fault_run.message(line) == "translation will be retried"
        and "Timeout" in str(line.get("error", ""))
    )


def _match(starts: list[float], ends: list[float]) -> list[float]:
    """Pair each hung call (arrival time) with the first unused timeout line after it."""
    left, took = list(ends), []
    for start in starts:
        after = [end for end in left if end > start]
        if after:
            left.remove(after[0])
            took.append(after[0] - start)
    return took
