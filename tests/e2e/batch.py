"""Submit a batch job through ingest with per-lot webhooks and a job webhook_url, wait for it, and
check it end to end: status 100 %, results with every description, webhooks verified, I1-I7."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
import httpx

from tests.harness import checker
from tests.harness.processes import eventually
from tests.harness.system import System, announce

LANGUAGES = ["en", "ru", "de"]


async def run_batch_job(
    system: System,
    http: httpx.AsyncClient,
    pool: asyncpg.Pool,
    total: int,
    *,
    budget_s: float,
    tick: Callable[[], Awaitable[None]] | None = None,
    label: str = "batch job",
) -> dict[str, object]:
    """``tick`` runs on every poll (e.g. advance the simulator's batch clock)."""
    tag = uuid.uuid4().hex[:8]
    hook, done = f"/hook/batch/{tag}", f"/done/batch/{tag}"
    lots = [
        {
            "lot_id": f"b-{tag}-{i}",
            "additional_info": f"lot {i}",
            "webhook": system.receiver.hook(hook),
            "images": [{"url": system.images.ok(f"{tag}-{i}-{k}")} for k in range(2)],
        }
        for i in range(total)
    ]
    client = system.client(http)
    started = time.monotonic()
    response = await client.generate(lots, LANGUAGES, webhook_url=system.receiver.hook(done))
    assert response.status_code == 201, response.text
    accepted = time.monotonic() - started
    job_id = response.json()["job_id"]
    assert response.json()["lots_count"] == total

    async def completed() -> bool:
        if tick is not None:
            await tick()
        answer = await client.batch_status(job_id)
        return answer.status_code == 200 and answer.json()["status"] == "completed"

    await eventually(completed, timeout=budget_s, interval=0.5)
    finished = time.monotonic() - started
    expect = checker.Expect(uuid.UUID(job_id), 2, hook_path=hook, completion_path=done)
    found = await checker.settle(pool, system, expect, timeout=60)
    assert not found, found
    delivered = time.monotonic() - started

    status = (await client.batch_status(job_id)).json()
    assert status["progress"] == {
        "total_lots": total,
        "processed_lots": total,
        "failed_lots": 0,
        "completion_percentage": 100,
    }
    results = await client.batch_results(job_id)
    assert results.status_code == 200, results.text[:300]
    body = results.json()
    assert body["status"] == "completed"
    result_lots = body["results"]["lots"]
    assert len(result_lots) == total
    assert {r["lot_id"] for r in result_lots} == {lot["lot_id"] for lot in lots}
    for lot in result_lots:
        assert [d["language"] for d in lot["descriptions"]] == LANGUAGES
        assert all(d["damages"] for d in lot["descriptions"])
    (completion,) = {r.msg_id: r for r in system.receiver.snapshot() if r.path == done}.values()
    assert completion.json["status"] == "completed"
    assert completion.json["completed_lots"] == total
    totals = await pool.fetchrow(
        """SELECT j.input_tokens AS job_tokens, j.cost_usd AS job_cost,
                  sum(l.input_tokens) AS lot_tokens, sum(l.cost_usd) AS lot_cost
           FROM jobs j JOIN lots l USING (job_id) WHERE j.job_id = $1
           GROUP BY j.input_tokens, j.cost_usd""",
        uuid.UUID(job_id),
    )
    assert totals is not None
    assert totals["lot_tokens"] > 0
    # Each stage adds its usage to the lot and the job once: the job is the sum of its lots.
    assert (totals["job_tokens"], totals["job_cost"]) == (totals["lot_tokens"], totals["lot_cost"])
    failed_attempts = await pool.fetch(
        "SELECT a.error_class, a.error, a.status_code, count(*) AS n FROM webhook_attempts a "
        "JOIN webhook_deliveries d ON d.id = a.delivery_id WHERE d.job_id = $1 "
        "AND NOT a.succeeded GROUP BY 1, 2, 3",
        uuid.UUID(job_id),
    )
    figures: dict[str, object] = {
        "job_id": job_id,
        "lots": total,
        "accepted_s": round(accepted, 2),
        "completed_s": round(finished, 2),
        "webhooks_done_s": round(delivered, 2),
        "lots_per_s": round(total / finished, 1),
        "w2_deliveries": len(checker.w2_lots(system.receiver, hook)),
        "failed_attempts": [dict(r) for r in failed_attempts],
    }
    announce(label, figures)
    return figures
