"""Invariants of reliability.md §6.2 checked against PostgreSQL, the simulator's call log, the
webhook receiver and the service logs, for one job at a time.

:func:`violations` returns a list of readable violations (empty when every invariant holds):

- **I1** the job has exactly ``total_lots`` lot rows, seqs 0..N-1 (no lot lost, none invented);
- **I2** every lot is terminal, and no work row of the job is still ``running`` or ``queued``;
- **I3** no lot counted twice: the job's counters equal the terminal rows, and (with a receiver)
  every lot appears in exactly one distinct W2 delivery (webhook-id), whatever the retries;
- **I4** every webhook delivery of the job ended ``delivered``, the receiver verified every
  signature of every request, and it got the job's completion payload when one was expected;
- **I6** answered model calls of the job (simulator log, by metadata ``job_id``): vision calls
  <= lots + ``in_flight`` and translation calls <= lots x languages + ``in_flight``;
- **I7** no dead letters on this system's topics (or exactly ``dead_letters``, the poison
  records a test injected).
:func:`settle` polls :func:`violations` until none remain (the pipeline is asynchronous: a lot
row can read ``completed`` before the notifier's counters and webhooks caught up).
:func:`log_errors` is I9: ERROR/CRITICAL lines and tracebacks in the service logs.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from tests.harness.receiver import Receiver
from tests.harness.system import SERVICES, System

TERMINAL = ("completed", "failed", "cancelled")


@dataclass
class Expect:
    job_id: uuid.UUID
    languages: int  # non-en languages per lot (translation calls per lot)
    hook_path: str | None = None  # the receiver path of the per-lot webhooks
    completion_path: str | None = None  # the receiver path of the job webhook_url
    in_flight: int = 0  # model calls a crash or cancel may legitimately repeat or add
    statuses: tuple[str, ...] = ("completed",)  # allowed lot end states
    dead_letters: int = 0  # poison records the test injected on this system's topics
    extra: dict[str, Any] = field(default_factory=dict)


def model_calls(system: System, job_id: uuid.UUID, *, answered: bool = True) -> Counter[str]:
    """Calls per kind ("vision", "text") the simulator logged for one job; by default only the
    answered ones (an image the model could not download is a 400 and legitimately resent)."""
    return calls_by_job(system, answered=answered).get(str(job_id), Counter())


def calls_by_job(system: System, *, answered: bool = True) -> dict[str, Counter[str]]:
    """:func:`model_calls` of every job at once (one read of the simulator's call log)."""
    found: dict[str, Counter[str]] = {}
    for c in system.sim.admin.calls():
        job = (c.get("metadata") or {}).get("job_id")
        if job is not None and not (answered and c.get("errored")):
            found.setdefault(str(job), Counter())[str(c.get("kind"))] += 1
    return found


def w2_lots(receiver: Receiver, path: str) -> dict[str, list[dict[str, Any]]]:
    """The lots of every distinct W2 delivery to ``path``, by webhook-id."""
    found: dict[str, list[dict[str, Any]]] = {}
    for r in receiver.snapshot():
        if r.path == path and r.answered == 200:
            body = r.json
            if isinstance(body, dict) and "lots" in body:
                found[r.msg_id] = body["lots"]
    return found


async def violations(
    pool: asyncpg.Pool, system: System, expect: Expect, *, calls: Counter[str] | None = None
) -> list[str]:
    """``calls``: the job's :func:`model_calls`, when the caller already read the log."""
    out: list[str] = []
    job_id = expect.job_id
    job = await pool.fetchrow("SELECT * FROM jobs WHERE job_id = $1", job_id)
    if job is None:
        return [f"I1: job {job_id} has no row"]
    lots = await pool.fetch(
        "SELECT lot_seq, lot_id, status FROM lots WHERE job_id = $1 ORDER BY lot_seq", job_id
    )
    total = job["total_lots"]
    seqs = [r["lot_seq"] for r in lots]
    if seqs != list(range(total)):
        out.append(f"I1: {len(seqs)} lot rows for total_lots={total}")
    by_status = Counter(r["status"] for r in lots)
    not_terminal = {s: n for s, n in by_status.items() if s not in TERMINAL}
    if not_terminal:
        out.append(f"I2: lots not terminal: {not_terminal}")
    unexpected = {s: n for s, n in by_status.items() if s in TERMINAL and s not in expect.statuses}
    if unexpected:
        why = await pool.fetch(
            "SELECT l.lot_seq, l.status, l.error_code, l.error_message, w.last_error "
            "FROM lots l LEFT JOIN vision_work w USING (job_id, lot_seq) WHERE l.job_id = $1 "
            "AND l.status <> ALL($2::text[]) LIMIT 3",
            job_id,
            list(expect.statuses),
        )
        out.append(
            f"I2: lot end states {unexpected} not in {expect.statuses}: {[dict(r) for r in why]}"
        )
    for table in ("vision_work", "translate_work"):
        busy = await pool.fetchval(
            f"SELECT count(*) FROM {table} WHERE job_id = $1 AND status IN ('queued', 'running')",
            job_id,
        )
        if busy:
            out.append(f"I2: {busy} {table} rows still queued/running")
    # A lot cancelled by its own LotFailed(reason="cancelled") counts in failed_lots; the lots
    # the notifier cancels in bulk with the job do not (gen_notifier.store.cancel_job).
    low, high = by_status["failed"], by_status["failed"] + by_status["cancelled"]
    if job["completed_lots"] != by_status["completed"] or not low <= job["failed_lots"] <= high:
        out.append(
            f"I3: job counters {job['completed_lots']}/{job['failed_lots']} != rows "
            f"{by_status['completed']} completed, {low}..{high} failed"
        )
    out.extend(await _deliveries(pool, system, expect, lots))
    calls = model_calls(system, job_id) if calls is None else calls
    if calls["vision"] > total + expect.in_flight:
        out.append(f"I6: {calls['vision']} vision calls for {total} lots (+{expect.in_flight})")
    text_bound = total * expect.languages + expect.in_flight
    if calls["text"] > text_bound:
        out.append(f"I6: {calls['text']} translation calls, bound {text_bound}")
    dead = await pool.fetchval(
        "SELECT count(*) FROM dead_letter WHERE starts_with(topic, $1)", system.kafka.topic_prefix
    )
    if dead != expect.dead_letters:
        out.append(
            f"I7: {dead} dead letters on {system.kafka.topic_prefix}* "
            f"(expected {expect.dead_letters})"
        )
    return out


async def _deliveries(
    pool: asyncpg.Pool, system: System, expect: Expect, lots: list[asyncpg.Record]
) -> list[str]:
    out: list[str] = []
    rows = await pool.fetch(
        "SELECT msg_id, kind, status FROM webhook_deliveries WHERE job_id = $1", expect.job_id
    )
    undelivered = Counter(r["status"] for r in rows if r["status"] != "delivered")
    if undelivered:
        out.append(f"I4: deliveries not delivered: {dict(undelivered)}")
    received = system.receiver.snapshot()
    paths = {expect.hook_path, expect.completion_path} - {None}
    bad = [r.msg_id for r in received if r.path in paths and not r.verified]
    if bad:
        out.append(f"I4: {len(bad)} requests failed signature checks: {bad[:5]}")
    if expect.hook_path is not None:
        per_lot = Counter(
            json.dumps(lot["lot_id"])
            for body in w2_lots(system.receiver, expect.hook_path).values()
            for lot in body
        )
        want = Counter(json.dumps(r["lot_id"]) for r in lots if r["status"] in TERMINAL)
        if per_lot != want:
            missing = sum((want - per_lot).values())
            twice = sum((per_lot - want).values())
            out.append(f"I3/I4: W2 lots: {missing} never delivered, {twice} delivered twice")
    if expect.completion_path is not None:
        done = [
            r
            for r in received
            if r.path == expect.completion_path
            and r.answered == 200
            and isinstance(r.json, dict)
            and r.json.get("job_id") == str(expect.job_id)
        ]
        if len({r.msg_id for r in done}) != 1:
            out.append(f"I4: {len({r.msg_id for r in done})} completion payloads received")
    return out


async def settle(
    pool: asyncpg.Pool, system: System, expect: Expect, *, timeout: float = 30
) -> list[str]:
    """Wait until every invariant holds; the violations still left after ``timeout``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while found := await violations(pool, system, expect):
        if asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(0.2)
    return []


async def settle_all(
    pool: asyncpg.Pool, system: System, expects: list[Expect], *, timeout: float = 60
) -> dict[uuid.UUID, list[str]]:
    """:func:`settle` for many jobs at once: the violations still left per job after
    ``timeout`` (jobs that settled are not checked again)."""
    deadline = asyncio.get_running_loop().time() + timeout
    left = {e.job_id: e for e in expects}
    found: dict[uuid.UUID, list[str]] = {}
    while left:
        found = {}
        calls = calls_by_job(system)
        for job_id, expect in left.items():
            job_calls = calls.get(str(job_id), Counter())
            if problems := await violations(pool, system, expect, calls=job_calls):
                found[job_id] = problems
        left = {job_id: left[job_id] for job_id in found}
        if not left or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.5)
    return found


async def abandoned_calls(pool: asyncpg.Pool, system: System, stage: str) -> Counter[str]:
    """Model calls per job that a stopped ``stage`` ("vision" or "translate") started and never
    stored: calls the simulator logged minus results PostgreSQL holds. Read once the stage's
    process has exited (no other stage makes that kind of call); these are the calls a crash or
    shutdown may legitimately repeat (I6's ``in_flight``)."""
    kind, table = {
        "vision": ("vision", "vision_results"),
        "translate": ("text", "translate_results"),
    }[stage]
    rows = await pool.fetch(f"SELECT job_id, count(*) AS n FROM {table} GROUP BY job_id")
    stored = {str(r["job_id"]): int(r["n"]) for r in rows}
    out: Counter[str] = Counter()
    for job, calls in calls_by_job(system).items():
        if (extra := calls[kind] - stored.get(job, 0)) > 0:
            out[job] = extra
    return out


def log_errors(system: System, allowed: tuple[str, ...] = ()) -> list[str]:
    """I9: ERROR/CRITICAL log lines and tracebacks, minus messages containing ``allowed``."""
    found = []
    for name in SERVICES:
        for line in system.log_lines(name):
            text = json.dumps(line)
            bad = line.get("level") in ("ERROR", "CRITICAL") or "Traceback" in text
            if bad and not any(a in text for a in allowed):
                found.append(f"{name}: {text[:400]}")
    return found
