"""SQL of endpoint health and secrets: breaker sampling, disabling, the 5-day rule, rotation.

The breaker (reliability.md §4.4, Convoy's model) is computed from ``webhook_attempts`` for all
sender processes at once; claims skip endpoints whose breaker is open. An endpoint is disabled by
a 410 at once, or (Svix's rule) when every attempt to it failed for ``disable_after_s``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from gen_common.db import Conn
from gen_common.signing import webhook_secret_bytes


async def disable(conn: Conn, endpoint_id: int, reason: str) -> None:
    await conn.execute(
        """UPDATE webhook_endpoints SET disabled_at = COALESCE(disabled_at, now()),
                  disabled_reason = $2, updated_at = now() WHERE id = $1""",
        endpoint_id,
        reason,
    )
    await conn.execute(
        """UPDATE webhook_deliveries SET status = 'disabled', last_error = $2, updated_at = now()
           WHERE endpoint_id = $1 AND status = 'queued'""",
        endpoint_id,
        reason,
    )


async def sample_breakers(conn: Conn, *, now: datetime, o: Any) -> list[str]:
    """Open the breaker of endpoints failing too often in the window; returns their URLs."""
    await conn.execute(
        """UPDATE webhook_endpoints e SET breaker_trips = 0 WHERE breaker_trips > 0
             AND (breaker_open_until IS NULL OR breaker_open_until <= $1::timestamptz)
             AND EXISTS (SELECT 1 FROM webhook_attempts a WHERE a.endpoint_id = e.id
                         AND a.succeeded AND a.attempted_at >= e.breaker_since)""",
        now,
    )
    rows = await conn.fetch(
        """WITH s AS (
               SELECT a.endpoint_id, count(*) AS n, count(*) FILTER (WHERE NOT a.succeeded) AS f
               FROM webhook_attempts a JOIN webhook_endpoints e ON e.id = a.endpoint_id
               WHERE a.attempted_at > $1::timestamptz - make_interval(secs => $2::float8)
                 AND a.attempted_at >= e.breaker_since AND e.disabled_at IS NULL
               GROUP BY a.endpoint_id)
           UPDATE webhook_endpoints e
              SET breaker_open_until = $1::timestamptz + make_interval(
                      secs => least($6::float8, $5::float8 * power(2, e.breaker_trips))),
                  breaker_since = $1::timestamptz + make_interval(
                      secs => least($6::float8, $5::float8 * power(2, e.breaker_trips))),
                  breaker_trips = e.breaker_trips + 1, updated_at = now()
           FROM s WHERE s.endpoint_id = e.id AND s.n >= $3 AND s.f >= $4::float8 * s.n
             AND (e.breaker_open_until IS NULL OR e.breaker_open_until <= $1::timestamptz)
           RETURNING e.url""",
        now,
        o.breaker_window_s,
        o.breaker_min_attempts,
        o.breaker_failure_rate,
        o.breaker_open_s,
        o.breaker_max_open_s,
    )
    return [r["url"] for r in rows]


async def disable_dead(conn: Conn, *, now: datetime, after_s: float) -> list[str]:
    """Disable endpoints whose attempts have all failed for ``after_s`` (and still fail)."""
    rows = await conn.fetch(
        """SELECT e.id, e.url FROM webhook_endpoints e
           CROSS JOIN LATERAL (
               SELECT min(a.attempted_at) AS first_failure FROM webhook_attempts a
               WHERE a.endpoint_id = e.id AND NOT a.succeeded
                 AND a.attempted_at > COALESCE((SELECT max(s.attempted_at) FROM webhook_attempts s
                                                WHERE s.endpoint_id = e.id AND s.succeeded),
                                               '-infinity')) f
           WHERE e.disabled_at IS NULL
             AND f.first_failure <= $1::timestamptz - make_interval(secs => $2::float8)""",
        now,
        after_s,
    )
    for row in rows:
        await disable(conn, row["id"], f"every attempt failed for {after_s / 86400:g} days")
    return [r["url"] for r in rows]


async def rotate_secret(
    conn: Conn, url: str, new_secret: str, *, shared_key: str, now: datetime, o: Any
) -> None:
    """Make ``new_secret`` current; the previous one keeps signing for ``rotation_grace_s``.

    Raises ValueError for a ``whsec_`` secret that is not base64 (checked before storing).
    """
    if not webhook_secret_bytes(new_secret):
        raise ValueError("empty webhook secret")
    row = await conn.fetchrow("SELECT * FROM webhook_endpoints WHERE url = $1 FOR UPDATE", url)
    if row is None:
        await conn.execute(
            "INSERT INTO webhook_endpoints (url, secret) VALUES ($1, $2)", url, new_secret
        )
        return
    expires = (now + timedelta(seconds=o.rotation_grace_s)).isoformat()
    previous = row["secret"] or shared_key
    kept = [s for s in row["old_secrets"] if datetime.fromisoformat(s["expires_at"]) > now]
    old = [{"secret": previous, "expires_at": expires}, *kept][: o.max_old_secrets]
    await conn.execute(
        """UPDATE webhook_endpoints SET secret = $2, old_secrets = $3, updated_at = now()
           WHERE id = $1""",
        row["id"],
        new_secret,
        old,
    )
