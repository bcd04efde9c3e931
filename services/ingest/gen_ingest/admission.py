"""The SQL that admits a request: the GCRA rate limit per bucket, and v2's one-statement admission
(nonce, rate slot, jobs row).

Plain functions over a connection, like :mod:`gen_ingest.store`; one round trip each.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from gen_common.db import Conn

# One GCRA step as two CTEs, shared by acquire_rate and admit (the fields are the statement's
# placeholders): ``lim`` is the client's T and tau (or the defaults given), ``ins`` takes a slot in
# the bucket when one is free (``when`` may add a condition) and returns allowed and the new tat.
_GCRA_STEP = """lim AS (
               SELECT make_interval(secs => 1.0 / coalesce(c.rate_per_s, {rate})) AS t,
                      make_interval(secs => coalesce(c.rate_burst, {burst})
                                            / coalesce(c.rate_per_s, {rate})) AS tau
               FROM (SELECT 1) AS one LEFT JOIN api_clients c ON c.client_id = {client}
           ), ins AS (
               INSERT INTO rate_limits AS r (bucket, tat, allowed)
               SELECT {bucket}, now() + lim.t, true FROM lim {when}
               ON CONFLICT (bucket) DO UPDATE SET
                   allowed = greatest(r.tat, now()) + (SELECT t FROM lim) - now()
                             <= (SELECT tau FROM lim),
                   tat = CASE WHEN greatest(r.tat, now()) + (SELECT t FROM lim) - now()
                                   <= (SELECT tau FROM lim)
                              THEN greatest(r.tat, now()) + (SELECT t FROM lim)
                              ELSE r.tat END
               RETURNING allowed, tat
           )"""


async def acquire_rate(
    conn: Conn, bucket: str, *, rate_per_s: float, burst: int, client_id: str | None = None
) -> float:
    """GCRA: 0.0 when the request may pass, else the seconds until it would.

    One round trip. The client's own ``rate_per_s`` / ``rate_burst`` (api_clients) override the
    defaults given here. The state is one theoretical arrival time per bucket.
    """
    row = await conn.fetchrow(
        "WITH "
        + _GCRA_STEP.format(bucket="$1", rate="$2", burst="$3", client="$4", when="")
        + """
           SELECT ins.allowed, extract(epoch FROM ins.tat - now() + lim.t - lim.tau)::float8
                  AS wait_s
           FROM ins, lim""",
        bucket,
        rate_per_s,
        float(burst),
        client_id,
    )
    assert row is not None
    return 0.0 if row["allowed"] else max(float(row["wait_s"]), 0.001)


@dataclass(frozen=True, slots=True)
class Admission:
    """The outcome of :func:`admit`: nonce, rate limit and (if asked) the job row, in that order."""

    fresh_nonce: bool
    wait_s: float  # 0.0: within the rate limit
    created_at: datetime | None  # the job row's, when one was inserted


@dataclass(frozen=True, slots=True)
class NewJob:
    job_id: uuid.UUID
    mode: str
    languages: list[str]
    total_lots: int
    webhook_url: str | None


async def admit(
    conn: Conn,
    *,
    client_id: str,
    nonce: str,
    bucket: str,
    rate_per_s: float,
    burst: int,
    api_version: int,
    job: NewJob | None,
) -> Admission:
    """One statement, one commit: remember the nonce, then (only for a fresh nonce) take a GCRA
    slot, then (only when the slot was granted and ``job`` is given) insert the jobs row.

    The same decisions as ``remember_nonce`` + :func:`acquire_rate` +
    :func:`gen_ingest.store.insert_job` run one after the other, in one round trip instead of
    three (plus their three commits).
    """
    row = await conn.fetchrow(
        """WITH nonce AS (
               INSERT INTO request_nonces (client_id, nonce) VALUES ($1, $2)
               ON CONFLICT DO NOTHING RETURNING true AS fresh
           ), """
        + _GCRA_STEP.format(
            bucket="$3", rate="$4", burst="$5", client="$1", when="WHERE EXISTS (SELECT FROM nonce)"
        )
        + """, job AS (
               INSERT INTO jobs (job_id, client_id, api_version, mode, languages, total_lots,
                                 webhook_url)
               SELECT $6, $1, $7, $8, $9, $10, $11 FROM ins
               WHERE ins.allowed AND $6::uuid IS NOT NULL
               RETURNING created_at
           )
           SELECT EXISTS (SELECT FROM nonce) AS fresh,
                  (SELECT CASE WHEN ins.allowed THEN 0.0
                               ELSE extract(epoch FROM ins.tat - now() + lim.t - lim.tau)::float8
                          END FROM ins, lim) AS wait_s,
                  (SELECT created_at FROM job) AS created_at""",
        client_id,
        nonce,
        bucket,
        rate_per_s,
        float(burst),
        None if job is None else job.job_id,
        api_version,
        None if job is None else job.mode,
        None if job is None else job.languages,
        None if job is None else job.total_lots,
        None if job is None else job.webhook_url,
    )
    assert row is not None
    wait = row["wait_s"]
    return Admission(
        fresh_nonce=bool(row["fresh"]),
        wait_s=0.0 if not wait else max(float(wait), 0.001),
        created_at=row["created_at"],
    )
