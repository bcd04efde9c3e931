"""Shared steps of the whole-system fault tests D2, D3, O3 and O4 (tests/faults/test_[do]*.py).

- :func:`submit` posts one v1 batch job through ingest with a per-lot webhook and a job
  ``webhook_url`` on the receiver; :func:`wait_final` polls status until the job is final.
- :func:`partial_state` is the "no partially applied state" check of D3: every table that one
  transaction writes together agrees with the others (lot ↔ vision result ↔ translations ↔ job
  counters, no work row left running, the outbox drained).
- :class:`LeaseWatch` samples, straight from PostgreSQL, work rows still ``running`` after their
  lease ran out (vision, translate, webhook deliveries) — the "lease expired" figure of D2.
- :func:`reaped` sums what the reapers logged they requeued.
- :func:`db_fault_run` is the whole setup of the PostgreSQL fault tests D2 and D3: a
  :class:`~tests.harness.fault_proxy.FaultProxy` in front of PostgreSQL for every service, the
  system, one job in flight (some lots done); :meth:`DbFaultRun.verdict` gathers what they check.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from tests.harness import checker
from tests.harness.fault_proxy import FaultProxy
from tests.harness.processes import eventually
from tests.harness.system import System, open_system

FINAL_JOB = ("completed", "failed", "cancelled")
# aiokafka logs this at ERROR while a fresh broker is still creating __consumer_offsets (the
# first test of a CI session); it is a start-up artefact, not the fault under test.
STARTUP_NOISE = ("GroupCoordinatorNotAvailable",)
LEASED = ("vision_work", "translate_work", "webhook_deliveries")


@dataclass(frozen=True)
class Submitted:
    job_id: uuid.UUID
    hook: str  # receiver path of the per-lot webhooks
    done: str  # receiver path of the job webhook_url
    lot_ids: list[str]
    languages: list[str]

    @property
    def non_en(self) -> int:
        return len({x for x in self.languages if x.lower() != "en"})


async def submit(
    system: System,
    http: httpx.AsyncClient,
    total: int,
    *,
    languages: list[str],
    info: Callable[[int], str] = lambda i: f"lot {i}",
    images: int = 2,
) -> Submitted:
    tag = uuid.uuid4().hex[:8]
    hook, done = f"/hook/faults/{tag}", f"/done/faults/{tag}"
    lots = [
        {
            "lot_id": f"f-{tag}-{i}",
            "additional_info": info(i),
            "webhook": system.receiver.hook(hook),
            "images": [{"url": system.images.ok(f"{tag}-{i}-{k}")} for k in range(images)],
        }
        for i in range(total)
    ]
    response = await system.client(http).generate(
        lots, languages, webhook_url=system.receiver.hook(done)
    )
    assert response.status_code == 201, response.text
    job_id = uuid.UUID(response.json()["job_id"])
    return Submitted(job_id, hook, done, [str(lot["lot_id"]) for lot in lots], languages)


async def job_status(system: System, http: httpx.AsyncClient, job_id: uuid.UUID) -> str:
    response = await system.client(http).batch_status(str(job_id))
    return str(response.json().get("status")) if response.status_code == 200 else ""


async def wait_final(
    system: System,
    http: httpx.AsyncClient,
    job_id: uuid.UUID,
    *,
    timeout: float,
    pool: asyncpg.Pool | None = None,
) -> str:
    """The job's final status; on timeout, fails with the service logs and (with ``pool``) the
    job's unfinished lots, their work rows and the server's open transactions."""

    async def final() -> bool:
        return await job_status(system, http, job_id) in FINAL_JOB

    try:
        await eventually(final, timeout=timeout, interval=0.5)
    except TimeoutError:
        state = "" if pool is None else await stuck(pool, job_id)
        raise AssertionError(
            f"job {job_id} not final in {timeout}s\n{state}\n{system.tails()}"
        ) from None
    return await job_status(system, http, job_id)


async def stuck(pool: asyncpg.Pool, job_id: uuid.UUID) -> str:
    """Where the job's unfinished lots are: lot rows, work rows, open server transactions."""
    lots = await pool.fetch(
        "SELECT lot_seq, status, updated_at FROM lots WHERE job_id = $1 "
        "AND status NOT IN ('completed', 'failed', 'cancelled') ORDER BY lot_seq LIMIT 10",
        job_id,
    )
    seqs = [r["lot_seq"] for r in lots]
    work = []
    for table in ("vision_work", "translate_work"):
        work += [
            f"{table} {dict(r)}"
            for r in await pool.fetch(
                f"SELECT * FROM {table} WHERE job_id = $1 AND lot_seq = ANY($2::int[])",
                job_id,
                seqs,
            )
        ]
    outbox = await pool.fetchval(
        "SELECT count(*) FROM outbox WHERE convert_from(payload, 'UTF8')::jsonb->>'job_id' = $1",
        str(job_id),
    )
    open_tx = await pool.fetch(
        """SELECT pid, state, wait_event_type, wait_event, now() - xact_start AS age,
                  left(query, 200) AS query FROM pg_stat_activity
           WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid()
             AND now() - xact_start > interval '5 seconds'"""
    )
    return "\n".join(
        [
            f"unfinished lots: {[dict(r) for r in lots]}",
            *work,
            f"outbox rows of the job: {outbox}",
            f"transactions open > 5 s: {[dict(r) for r in open_tx]}",
        ]
    )


async def lot_counts(pool: asyncpg.Pool, job_id: uuid.UUID) -> dict[str, int]:
    rows = await pool.fetch(
        "SELECT status, count(*) AS n FROM lots WHERE job_id = $1 GROUP BY 1", job_id
    )
    return {r["status"]: r["n"] for r in rows}


async def partial_state(pool: asyncpg.Pool, job: Submitted, prefix: str) -> list[str]:
    """What one transaction should have written together but the tables disagree on."""
    out: list[str] = []
    rows = await pool.fetch(
        """SELECT l.lot_seq, l.status, l.error_code, l.descriptions, l.input_tokens,
                  l.output_tokens, v.lot_seq IS NOT NULL AS assessed,
                  coalesce(v.input_tokens, 0) AS v_in,
                  (SELECT count(*) FROM translate_results t WHERE t.job_id = l.job_id
                     AND t.lot_seq = l.lot_seq AND t.outcome = 'translated') AS translated,
                  (SELECT count(*) FROM vision_work w WHERE w.job_id = l.job_id
                     AND w.lot_seq = l.lot_seq) AS work_rows,
                  (SELECT coalesce(sum(t.input_tokens), 0) FROM translate_results t
                     WHERE t.job_id = l.job_id AND t.lot_seq = l.lot_seq) AS t_in
           FROM lots l LEFT JOIN vision_results v USING (job_id, lot_seq)
           WHERE l.job_id = $1 ORDER BY l.lot_seq""",
        job.job_id,
    )
    for r in rows:
        seq = r["lot_seq"]
        if r["work_rows"] != 1:
            out.append(f"lot {seq}: {r['work_rows']} vision work rows")
        if r["status"] == "completed":
            if not r["assessed"]:
                out.append(f"lot {seq}: completed without a vision result")
            if r["translated"] != job.non_en:
                out.append(f"lot {seq}: completed with {r['translated']}/{job.non_en} translations")
            if len(r["descriptions"] or []) != 1 + job.non_en:
                out.append(f"lot {seq}: {len(r['descriptions'] or [])} descriptions")
            if r["input_tokens"] != r["v_in"] + r["t_in"]:
                out.append(
                    f"lot {seq}: lot input_tokens {r['input_tokens']} != vision {r['v_in']} "
                    f"+ translations {r['t_in']} (an increment applied twice or lost)"
                )
        elif r["status"] == "failed" and not r["error_code"]:
            out.append(f"lot {seq}: failed without an error code")
    job_row = await pool.fetchrow("SELECT * FROM jobs WHERE job_id = $1", job.job_id)
    assert job_row is not None
    done = sum(1 for r in rows if r["status"] == "completed")
    failed = sum(1 for r in rows if r["status"] == "failed")
    if (job_row["completed_lots"], job_row["failed_lots"]) != (done, failed):
        out.append(
            f"job counters {job_row['completed_lots']}/{job_row['failed_lots']} "
            f"!= lot rows {done}/{failed}"
        )
    for table in LEASED:
        busy = await pool.fetchval(
            f"SELECT count(*) FROM {table} WHERE job_id = $1 AND status = 'running'", job.job_id
        )
        if busy:
            out.append(f"{busy} {table} rows still running")
    left = await pool.fetchval(
        "SELECT count(*) FROM outbox WHERE convert_from(payload, 'UTF8')::jsonb->>'job_id' = $1",
        str(job.job_id),
    )
    if left:
        out.append(f"{left} outbox rows of the job never relayed ({prefix}*)")
    return out


async def job_totals(pool: asyncpg.Pool, job_id: uuid.UUID) -> dict[str, Any]:
    """The job's token total against the sum over its lots (reported, see the D3 test)."""
    row = await pool.fetchrow(
        """SELECT j.input_tokens AS job, (SELECT sum(input_tokens) FROM lots
                  WHERE job_id = j.job_id) AS lots FROM jobs j WHERE j.job_id = $1""",
        job_id,
    )
    assert row is not None
    return {"job_input_tokens": row["job"], "sum_lot_input_tokens": row["lots"]}


@dataclass
class LeaseWatch:
    """Samples running rows whose lease is over, every ``interval`` seconds, from PostgreSQL."""

    pool: asyncpg.Pool
    job_id: uuid.UUID
    interval: float = 0.25
    expired: dict[str, set[int]] = field(default_factory=dict)
    samples: int = 0

    async def _sample(self) -> None:
        for table in LEASED:
            ids = await self.pool.fetch(
                f"""SELECT id FROM {table} WHERE job_id = $1 AND status = 'running'
                      AND lease_until < now()""",
                self.job_id,
            )
            self.expired.setdefault(table, set()).update(r["id"] for r in ids)
        self.samples += 1

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[LeaseWatch]:
        async def loop() -> None:
            while True:
                await self._sample()
                await asyncio.sleep(self.interval)

        task = asyncio.create_task(loop())
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def counts(self) -> dict[str, int]:
        return {table: len(ids) for table, ids in self.expired.items()}


def reaped(system: System) -> dict[str, int]:
    """Rows the reapers said they requeued (vision logs a count; the notifier logs ``n``)."""
    found = {"vision": 0, "notifier": 0}
    for line in system.log_lines("vision"):
        if message(line) == "requeued lots with expired leases":
            found["vision"] += int(line.get("count", 0))
    for line in system.log_lines("notifier"):
        if message(line) == "re-queued deliveries with expired leases":
            found["notifier"] += int(line.get("n", 0))
    return found


def message(line: dict[str, Any]) -> str:
    """The message of one JSON log line (``msg``; ``message`` in older formats)."""
    return str(line.get("msg", line.get("message", "")))


def db_cleanups(system: System) -> dict[str, int]:
    """Connections gen_common.db terminated because their release reset or ROLLBACK failed."""
    found = {"release": 0, "rollback": 0}
    for name in ("ingest", "status", "vision", "translate", "notifier"):
        for line in system.log_lines(name):
            text = message(line)
            if text == "connection reset on release failed; connection terminated":
                found["release"] += 1
            elif text == "rollback failed; connection terminated":
                found["rollback"] += 1
    return found


@dataclass(frozen=True)
class Verdict:
    """What a whole-system fault run ended with; :meth:`assert_clean` is the common pass bar."""

    status: str
    alive: dict[str, bool]
    violations: list[str]  # I1-I7 (tests.harness.checker) still broken after settling
    partial: list[str]  # :func:`partial_state`
    errors: list[str]  # I9: error log lines

    def assert_clean(self) -> None:
        assert all(self.alive.values()), f"a process exited: {self.alive}"
        assert self.status == "completed", self.status
        assert not self.violations, self.violations
        assert not self.partial, self.partial
        assert not self.errors, self.errors[:5]


@dataclass
class DbFaultRun:
    """One job in flight through a system whose every PostgreSQL connection passes ``proxy``;
    ``pool`` is the test's own direct pool, for the checks."""

    proxy: FaultProxy
    system: System
    http: httpx.AsyncClient
    pool: asyncpg.Pool
    job: Submitted
    at_start: dict[str, int]

    async def counts(self) -> dict[str, int]:
        return await lot_counts(self.pool, self.job.job_id)

    async def wait_final(self, timeout: float) -> str:
        return await wait_final(
            self.system, self.http, self.job.job_id, timeout=timeout, pool=self.pool
        )

    async def verdict(self, status: str, *, in_flight: int, allowed: tuple[str, ...]) -> Verdict:
        """Once the job is final: processes alive, I1-I7 settled (``in_flight``: model calls
        the fault may legitimately repeat), no partial state, no error logged."""
        job = self.job
        expect = checker.Expect(
            job.job_id,
            job.non_en,
            hook_path=job.hook,
            completion_path=job.done,
            in_flight=in_flight,
        )
        return Verdict(
            status=status,
            alive=self.system.alive(),
            violations=await checker.settle(self.pool, self.system, expect, timeout=60),
            partial=await partial_state(self.pool, job, self.system.kafka.topic_prefix),
            errors=checker.log_errors(self.system, allowed=allowed),
        )


@asynccontextmanager
async def db_fault_run(
    *,
    migrated: str,
    bootstrap: str,
    pool: asyncpg.Pool,
    root: Path,
    seed: int,
    lots: int,
    vision_ms: int,
) -> AsyncIterator[DbFaultRun]:
    """The system behind a fault proxy (toggles off), a job of ``lots`` lots in en, ru, de
    submitted (each vision call takes ``vision_ms``), entered once some lot completed."""
    sim = {"latency": {"kinds": {"vision": {"dist": "fixed", "ms": vision_ms}}}}
    with FaultProxy.for_url(migrated, seed=seed) as proxy:
        async with (
            open_system(
                db_url=proxy.url(migrated), bootstrap=bootstrap, root=root, sim_config=sim
            ) as system,
            httpx.AsyncClient(timeout=120) as http,
        ):
            job = await submit(system, http, lots, languages=["en", "ru", "de"])

            async def some_done() -> bool:
                return (await lot_counts(pool, job.job_id)).get("completed", 0) > 0

            await eventually(some_done, timeout=90, interval=0.2)
            at_start = await lot_counts(pool, job.job_id)
            try:
                yield DbFaultRun(proxy, system, http, pool, job, at_start)
            finally:
                proxy.clear()
