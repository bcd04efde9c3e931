"""SQL of the vision stage's intake: what a LotSubmitted writes (the jobs row of a new job, the
lots row, the work row, the workers' NOTIFY), for a consumed batch's events (or one) in one
statement. A plain function taking a connection; the consumer's batch transaction holds it.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
from gen_common.claimer import Lease
from gen_common.db import Conn
from gen_common.events import LotSubmitted

from gen_vision.store import CHANNEL

PRIORITY = {"sync": 10, "realtime": 5, "batch": 1}


async def submit_lots(
    conn: Conn,
    lots: Sequence[tuple[LotSubmitted, str, str | None]],
    lease: Lease | None = None,
) -> tuple[int, list[asyncpg.Record]]:
    """Everything ``(event, path, traceparent)`` lots write, in ONE statement (a consumed batch,
    or one record: one round trip either way): unless ingest aborted the job, the jobs row of a
    new job (it starts 'processing'), the lots row with its trace context, the work row
    (cancelled at once if the job already is), a pending job flipped to 'processing' and the
    workers' NOTIFY. Returns how many work rows it queued (0: redeliveries or dropped lots),
    and the work rows it leased (``lease``: sync lots on the realtime path, as jobs.claim
    leases them; no NOTIFY for those).

    The lots travel as one JSON document (``jsonb_to_recordset``: arrays of arrays, as images
    are, cannot be parameters). The sibling CTEs share one snapshot, which is why a job inserted
    here starts 'processing' (the UPDATE cannot see it). The lots row keeps the record's trace
    context, so the lot's later events continue its trace (gen_common.outbox.add reads it when
    no context is bound)."""
    to_lease = Lease.pick(lease, [e.mode == "sync" and path == "realtime" for e, path, _ in lots])
    rows = [
        {
            "job_id": e.job_id,
            "client_id": e.client_id,
            "api_version": e.api_version,
            "mode": e.mode,
            "languages": e.languages,
            "total_lots": e.total_lots,
            "job_webhook_url": e.job_webhook_url,
            "lot_seq": e.lot_seq,
            "lot_id": e.lot_id,
            "webhook": e.webhook,
            "traceparent": trace,
            "path": path,
            "images": e.images,
            "additional_info": e.additional_info,
            "priority": PRIORITY[e.mode],
            "lease": i in to_lease,
        }
        for i, (e, path, trace) in enumerate(lots)
    ]
    found = await conn.fetch(
        f"""WITH x AS (
               SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(
                   job_id uuid, client_id text, api_version int, mode text, languages text[],
                   total_lots int, job_webhook_url text, lot_seq int, lot_id jsonb, webhook text,
                   traceparent text, path text, images text[], additional_info text,
                   priority smallint, lease boolean)
               WHERE NOT EXISTS (SELECT 1 FROM aborted_jobs a WHERE a.job_id = x.job_id)),
           j AS (
               INSERT INTO jobs (job_id, client_id, api_version, mode, languages, total_lots,
                                 webhook_url, status)
               SELECT DISTINCT ON (job_id) job_id, client_id, api_version, mode, languages,
                      total_lots, job_webhook_url, 'processing'
               -- Known job: no INSERT at all. ON CONFLICT alone waits for every transaction
               -- holding the jobs row (workers add tokens per lot): the partition would stall.
               FROM x WHERE NOT EXISTS (SELECT 1 FROM jobs WHERE jobs.job_id = x.job_id)
               ORDER BY job_id, lot_seq
               ON CONFLICT (job_id) DO NOTHING),
           l AS (
               INSERT INTO lots (job_id, lot_seq, lot_id, webhook, traceparent)
               SELECT job_id, lot_seq, lot_id, webhook, traceparent FROM x
               ON CONFLICT (job_id, lot_seq) DO NOTHING),
           w AS (
               INSERT INTO vision_work (job_id, lot_seq, lot_id, mode, path, languages, images,
                                        additional_info, priority, status, lease_owner,
                                        lease_until, attempts)
               SELECT job_id, lot_seq, lot_id, mode, path, languages, images, additional_info,
                      priority,
                      CASE WHEN c.cancelled THEN 'cancelled'
                           WHEN x.lease THEN 'running' ELSE 'queued' END,
                      CASE WHEN x.lease AND NOT c.cancelled THEN $2::text END,
                      CASE WHEN x.lease AND NOT c.cancelled
                           THEN now() + make_interval(secs => $3::float8) END,
                      CASE WHEN x.lease AND NOT c.cancelled THEN 1 ELSE 0 END
               FROM x CROSS JOIN LATERAL (
                   SELECT EXISTS (SELECT 1 FROM jobs WHERE jobs.job_id = x.job_id
                                                      AND status = 'cancelled') AS cancelled) c
               ON CONFLICT (job_id, lot_seq) DO NOTHING
               RETURNING *),
           p AS (
               UPDATE jobs SET status = 'processing', updated_at = now()
               WHERE job_id IN (SELECT job_id FROM w) AND status = 'pending')
           SELECT (SELECT count(*) FROM w) AS queued_rows,
                  (SELECT pg_notify('{CHANNEL}', '') FROM w WHERE status = 'queued' LIMIT 1)
                      AS notified,
                  leased.*
           FROM (SELECT 1) AS one
           LEFT JOIN (SELECT * FROM w WHERE status = 'running') AS leased ON true""",
        rows,  # the pool's jsonb codec encodes it (gen_common.db)
        lease.owner if lease else None,
        lease.lease_s if lease else None,
    )
    return int(found[0]["queued_rows"]), [r for r in found if r["id"] is not None]
