"""SQL of the sending side: claim (gen_common.jobs), record attempts, reap, replay.

``webhook_deliveries`` is a gen_common.jobs work table: 'queued' is a pending delivery and
'running' one being sent. Claims skip endpoints that are disabled, whose breaker is open, or that
already have ``in_flight`` deliveries running, so a dead receiver cannot occupy every sender.
Every ``now`` comes from the notifier's clock (tests move it by hand).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from gen_common import jobs
from gen_common.db import Conn

from gen_notifier import endpoints
from gen_notifier.deliver import Outcome

log = logging.getLogger(__name__)
TABLE = "webhook_deliveries"
REPLAYABLE = ("failed", "exhausted", "disabled")


def _ts(when: datetime) -> str:
    return f"'{when.isoformat()}'::timestamptz"  # a datetime we formatted, never user input


async def claim(
    conn: Conn, *, owner: str, lease_s: float, limit: int, in_flight: int, now: datetime
) -> list[tuple[asyncpg.Record, asyncpg.Record]]:
    guard = f"""next_attempt_at <= {_ts(now)}
        AND endpoint_id IN (SELECT e.id FROM webhook_endpoints e WHERE e.disabled_at IS NULL
              AND (e.breaker_open_until IS NULL OR e.breaker_open_until <= {_ts(now)}))
        AND endpoint_id NOT IN (SELECT r.endpoint_id FROM webhook_deliveries r
              WHERE r.status = 'running' GROUP BY r.endpoint_id
              HAVING count(*) >= {int(in_flight)})"""
    rows = await jobs.claim(conn, TABLE, owner=owner, lease_s=lease_s, limit=limit, where=guard)
    if not rows:
        return []
    rows = await _cap_per_endpoint(conn, rows, in_flight)
    endpoints = {
        e["id"]: e
        for e in await conn.fetch(
            "SELECT * FROM webhook_endpoints WHERE id = ANY($1::bigint[])",
            list({r["endpoint_id"] for r in rows}),
        )
    }
    return [(r, endpoints[r["endpoint_id"]]) for r in rows]


async def _cap_per_endpoint(
    conn: Conn, rows: list[asyncpg.Record], in_flight: int
) -> list[asyncpg.Record]:
    """Give back (in the claim's transaction) what would exceed ``in_flight`` per endpoint."""
    claimed = [r["id"] for r in rows]
    running = {
        r["endpoint_id"]: r["n"]
        for r in await conn.fetch(
            """SELECT endpoint_id, count(*) AS n FROM webhook_deliveries
               WHERE status = 'running' AND endpoint_id = ANY($1::bigint[])
                 AND id <> ALL($2::bigint[]) GROUP BY endpoint_id""",
            list({r["endpoint_id"] for r in rows}),
            claimed,
        )
    }
    kept, extra = [], []
    for row in rows:
        ep = row["endpoint_id"]
        if running.get(ep, 0) < in_flight:
            running[ep] = running.get(ep, 0) + 1
            kept.append(row)
        else:
            extra.append(row["id"])
    if extra:
        await conn.execute(
            """UPDATE webhook_deliveries SET status = 'queued', lease_owner = NULL,
                      lease_until = NULL, attempts = attempts - 1
               WHERE id = ANY($1::bigint[])""",
            extra,
        )
    return kept


@dataclass(frozen=True, slots=True)
class Result:
    """One finished attempt, ready to be recorded."""

    delivery: asyncpg.Record
    outcome: Outcome
    attempted_at: datetime
    status: str
    next_attempt_at: datetime | None


async def record(conn: Conn, results: list[Result], *, owner: str, max_body: int) -> int:
    """Log the attempts and move the deliveries on (one statement each, for any number of
    results); returns how many updates kept their lease (a lost lease updates nothing)."""
    if not results:
        return 0
    await conn.execute(
        """INSERT INTO webhook_attempts (delivery_id, endpoint_id, attempt, trigger, attempted_at,
               status_code, duration_ms, response_body, error_class, error, succeeded,
               next_attempt_at)
           SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::int[], $4::text[],
                                $5::timestamptz[], $6::int[], $7::int[], $8::text[], $9::text[],
                                $10::text[], $11::bool[], $12::timestamptz[])""",
        [r.delivery["id"] for r in results],
        [r.delivery["endpoint_id"] for r in results],
        [r.delivery["attempts"] for r in results],
        [r.delivery["trigger"] for r in results],
        [r.attempted_at for r in results],
        [r.outcome.status_code for r in results],
        [r.outcome.duration_ms for r in results],
        [r.outcome.response_body[:max_body] for r in results],
        [r.outcome.error_class for r in results],
        [r.outcome.error or None for r in results],
        [r.outcome.succeeded for r in results],
        [r.next_attempt_at for r in results],
    )
    kept = await conn.fetch(
        """UPDATE webhook_deliveries d SET status = u.status, lease_owner = NULL,
                  lease_until = NULL, next_attempt_at = COALESCE(u.next_at, d.next_attempt_at),
                  last_error = u.error, last_status_code = u.code, last_attempt_at = u.at,
                  updated_at = now(),
                  delivered_at = CASE WHEN u.status = 'delivered' THEN u.at ELSE d.delivered_at END
           FROM unnest($1::bigint[], $2::text[], $3::timestamptz[], $4::text[], $5::int[],
                       $6::timestamptz[]) AS u(id, status, next_at, error, code, at)
           WHERE d.id = u.id AND d.status = 'running' AND d.lease_owner = $7
           RETURNING d.id""",
        [r.delivery["id"] for r in results],
        [r.status for r in results],
        [r.next_attempt_at for r in results],
        [r.outcome.error or None for r in results],
        [r.outcome.status_code for r in results],
        [r.attempted_at for r in results],
        owner,
    )
    for endpoint_id in sorted({r.delivery["endpoint_id"] for r in results if r.outcome.gone}):
        await endpoints.disable(conn, endpoint_id, "receiver answered 410 Gone")
        log.warning("endpoint disabled: 410 Gone", extra={"endpoint_id": endpoint_id})
    return len(kept)


async def release(conn: Conn, owner: str) -> int:
    return await jobs.release(conn, TABLE, owner=owner)


async def reap(conn: Conn, now: datetime) -> int:
    """Requeue deliveries whose sender died; the lost attempt is logged (outcome unknown)."""
    rows = await conn.fetch(
        """WITH r AS (
               UPDATE webhook_deliveries SET status = 'queued', lease_owner = NULL,
                      lease_until = NULL, last_error = 'lease expired', updated_at = now()
               WHERE status = 'running' AND lease_until < now()
               RETURNING id, endpoint_id, attempts, trigger)
           INSERT INTO webhook_attempts (delivery_id, endpoint_id, attempt, trigger,
                                         attempted_at, error_class, error, succeeded)
           SELECT id, endpoint_id, attempts, trigger, $1, 'lease_expired',
                  'sender lost its lease; outcome unknown', false FROM r
           RETURNING delivery_id""",
        now,
    )
    return len(rows)


async def replay_one(conn: Conn, msg_id: str, now: datetime) -> str:
    """'replayed', 'missing', or the current status when it cannot be replayed."""
    row = await conn.fetchrow(
        "SELECT id, status, endpoint_id FROM webhook_deliveries WHERE msg_id = $1 FOR UPDATE",
        msg_id,
    )
    if row is None:
        return "missing"
    if row["status"] not in REPLAYABLE:
        return str(row["status"])
    if row["status"] == "disabled":  # an operator's replay re-enables the endpoint
        await conn.execute(
            """UPDATE webhook_endpoints SET disabled_at = NULL, disabled_reason = NULL,
                      updated_at = now() WHERE id = $1""",
            row["endpoint_id"],
        )
    await _requeue(conn, "id = $2", now, row["id"])
    return "replayed"


async def replay_since(conn: Conn, since: datetime, now: datetime) -> list[str]:
    """Every failed or exhausted delivery created since ``since``, sent again once (manual)."""
    return await _requeue(
        conn, "status IN ('failed', 'exhausted') AND created_at >= $2", now, since
    )


async def _requeue(conn: Conn, where: str, now: datetime, arg: object) -> list[str]:
    rows = await conn.fetch(
        f"""UPDATE webhook_deliveries SET status = 'queued', trigger = 'manual', priority = 1,
                   next_attempt_at = $1, last_error = NULL, updated_at = now()
            WHERE {where} RETURNING msg_id""",
        now,
        arg,
    )
    return [r["msg_id"] for r in rows]
