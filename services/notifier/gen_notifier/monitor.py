"""The original's webhook monitoring numbers (contract §7.5), computed from our tables.

Differences, on purpose: ``failed`` counts every final non-delivered status (failed, exhausted,
disabled); ``pending`` counts queued and sending deliveries regardless of the window; endpoint
figures count real attempts of the last 24 h; and with no deliveries at all the health report is
100 / healthy (the original said 80 / degraded).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gen_common.db import Conn

FAILED = ("failed", "exhausted", "disabled")


def _now() -> str:
    return datetime.now(UTC).replace(tzinfo=None).isoformat()


async def metrics(conn: Conn, hours: int) -> dict[str, Any]:
    row = await conn.fetchrow(
        """SELECT count(*) AS total,
                  count(*) FILTER (WHERE status = 'delivered') AS delivered,
                  count(*) FILTER (WHERE status = ANY($2::text[])) AS failed,
                  avg(attempts) FILTER (WHERE status = 'delivered') AS retries,
                  avg(extract(epoch FROM delivered_at - created_at))
                      FILTER (WHERE status = 'delivered') AS delivery_s
           FROM webhook_deliveries WHERE created_at >= now() - make_interval(hours => $1)""",
        hours,
        list(FAILED),
    )
    pending = await conn.fetchval(
        "SELECT count(*) FROM webhook_deliveries WHERE status IN ('queued', 'running')"
    )
    assert row is not None
    total = row["total"]
    return {
        "period_hours": hours,
        "total_webhooks": total,
        "delivered": row["delivered"],
        "failed": row["failed"],
        "pending": pending,
        "success_rate": round(row["delivered"] / total * 100, 2) if total else 0.0,
        "average_retries": round(float(row["retries"] or 0), 2),
        "average_delivery_time_seconds": round(float(row["delivery_s"] or 0), 3),
        "metrics_timestamp": _now(),
    }


async def failures(conn: Conn, limit: int) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT d.msg_id, e.url, d.attempts, d.last_error, d.last_attempt_at, d.created_at,
                  d.status, d.last_status_code, d.kind, d.job_id
           FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
           WHERE d.status = ANY($1::text[]) ORDER BY d.updated_at DESC, d.id DESC LIMIT $2""",
        list(FAILED),
        limit,
    )
    return [
        {
            "id": r["msg_id"],
            "webhook_url": r["url"],
            "attempt_count": r["attempts"],
            "error_message": r["last_error"],
            "last_attempt": r["last_attempt_at"].isoformat() if r["last_attempt_at"] else None,
            "created_at": r["created_at"].isoformat(),
            "status": r["status"],
            "last_status_code": r["last_status_code"],
            "kind": r["kind"],
            "job_id": str(r["job_id"]) if r["job_id"] else None,
        }
        for r in rows
    ]


async def endpoints(conn: Conn) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT e.url, e.disabled_at, e.breaker_open_until > now() AS breaker_open,
                  count(a.id) AS total, count(a.id) FILTER (WHERE a.succeeded) AS ok
           FROM webhook_endpoints e
           LEFT JOIN webhook_attempts a
                  ON a.endpoint_id = e.id AND a.attempted_at >= now() - interval '24 hours'
           GROUP BY e.id ORDER BY e.url"""
    )
    return [
        {
            "webhook_url": r["url"],
            "total_attempts": r["total"],
            "successful": r["ok"],
            "failed": r["total"] - r["ok"],
            "success_rate": round(r["ok"] / r["total"] * 100, 2) if r["total"] else 0.0,
            "disabled": r["disabled_at"] is not None,
            "breaker_open": bool(r["breaker_open"]),
        }
        for r in rows
    ]


async def alerts(
    conn: Conn, m1h: dict[str, Any], eps: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if m1h["total_webhooks"] > 10 and m1h["success_rate"] < 90:
        found.append(
            _alert(
                "warning",
                "Low success rate in the last hour",
                "success_rate_1h",
                m1h["success_rate"],
            )
        )
    stale = await conn.fetchval(
        """SELECT count(*) FROM webhook_deliveries WHERE status IN ('queued', 'running')
           AND created_at < now() - interval '1 hour'"""
    )
    if stale > 10:
        found.append(_alert("error", "Deliveries pending for over an hour", "stale_pending", stale))
    if m1h["average_retries"] > 2:
        found.append(
            _alert(
                "warning",
                "High average retries in the last hour",
                "average_retries_1h",
                m1h["average_retries"],
            )
        )
    measured = [e for e in eps if e["total_attempts"] > 0]
    for e in sorted(measured, key=lambda e: e["success_rate"])[:3]:
        if e["total_attempts"] > 5 and e["success_rate"] < 50:
            alert = _alert("error", "Endpoint failing", "endpoint_success_rate", e["success_rate"])
            found.append({**alert, "endpoint": e["webhook_url"]})
    return found


def _alert(level: str, message: str, metric: str, value: object) -> dict[str, Any]:
    return {"level": level, "message": message, "metric": metric, "value": value}


def health_score(m24: dict[str, Any], found: list[dict[str, Any]]) -> tuple[float, str]:
    score = 100.0
    if m24["total_webhooks"] and m24["success_rate"] < 95:
        score -= min(20.0, (95 - m24["success_rate"]) * 2)
    if m24["average_retries"] > 1.5:
        score -= min(15.0, (m24["average_retries"] - 1.5) * 10)
    score -= sum(10 if a["level"] == "error" else 5 for a in found)
    score = max(0.0, round(score, 2))
    status = (
        "healthy"
        if score >= 90
        else "degraded"
        if score >= 70
        else "unhealthy"
        if score >= 50
        else "critical"
    )
    return score, status


async def report(conn: Conn) -> dict[str, Any]:
    m24, m1 = await metrics(conn, 24), await metrics(conn, 1)
    eps = await endpoints(conn)
    found = await alerts(conn, m1, eps)
    score, status = health_score(m24, found)
    return {
        "metrics_24h": m24,
        "metrics_1h": m1,
        "failed_webhooks": await failures(conn, 10),
        "endpoint_health": eps,
        "alerts": found,
        "report_timestamp": _now(),
        "health_score": score,
        "health_status": status,
    }
