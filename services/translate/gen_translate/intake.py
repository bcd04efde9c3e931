"""SQL of the translate stage's intake: what a LotAssessed writes (the translate_lots row, lots
status 'translating', a work row per language, the workers' NOTIFY), for a consumed batch's
events (or one) in one statement. A plain function taking a connection; the consumer's batch
transaction holds it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from gen_common.claimer import Lease
from gen_common.db import Conn
from gen_common.events import LotAssessed

from gen_translate.store import LEASED_WITH_SOURCE


@dataclass(frozen=True, slots=True)
class Accepted:
    """A LotAssessed for :func:`accept_lots`, with what its consumer made of it."""

    event: LotAssessed
    languages: list[str]  # translate_lots.languages: the requested ones, en dropped
    work_languages: list[str]  # distinct: one work row each
    deadline: datetime | None
    priority: int


@dataclass(frozen=True, slots=True)
class Intake:
    """What :func:`accept_lots` did beyond its rows."""

    english_only: list[tuple[uuid.UUID, int]]  # lots asking for en alone: complete them now
    dropped: int  # lots of cancelled jobs or lots
    leased: list[asyncpg.Record]  # work rows leased by ``lease``, shaped as store's claim


async def accept_lots(
    conn: Conn, lots: Sequence[Accepted], *, notify: str, lease: Lease | None = None
) -> Intake:
    """Everything the lots' LotAssessed events write, in ONE statement (a consumed batch, or one
    record): unless the lot or its job was cancelled (translate_cancelled_jobs has the job, or
    its lots row says 'cancelled'), the translate_lots row, lots.status 'translating', one work
    row per language of ``work_languages`` and the workers' NOTIFY on channel ``notify``. A
    redelivered lot writes nothing more. The lots travel as one JSON document.

    ``lease``: the languages of up to ``lease.slots`` sync lots are leased to ``lease.owner``
    by this statement (as jobs.claim would, no NOTIFY for them) and returned shaped as
    store.CLAIM_WITH_SOURCE returns a claim."""
    to_lease = Lease.pick(lease, [a.event.mode == "sync" and bool(a.work_languages) for a in lots])
    rows = [
        {
            "job_id": a.event.job_id,
            "lot_seq": a.event.lot_seq,
            "lot_id": a.event.lot_id,
            "mode": a.event.mode,
            "languages": a.languages,
            "description_en": a.event.description_en,
            "assessment": a.event.assessment,
            "missing_images": a.event.missing_images,
            "assessed_at": a.event.occurred_at,
            "deadline_at": a.deadline,
            "work_languages": a.work_languages,
            "priority": a.priority,
            "lease": i in to_lease,
        }
        for i, a in enumerate(lots)
    ]
    found = await conn.fetch(
        f"""WITH x AS (
                SELECT x.*,
                       EXISTS (SELECT 1 FROM translate_cancelled_jobs c
                               WHERE c.job_id = x.job_id)
                       OR EXISTS (SELECT 1 FROM lots t WHERE t.job_id = x.job_id
                                  AND t.lot_seq = x.lot_seq AND t.status = 'cancelled')
                       AS cancelled
                FROM jsonb_to_recordset($1::jsonb) AS x(
                    job_id uuid, lot_seq int, lot_id jsonb, mode text, languages text[],
                    description_en text, assessment jsonb, missing_images text[],
                    assessed_at timestamptz, deadline_at timestamptz, work_languages text[],
                    priority smallint, lease boolean)),
            l AS (
                INSERT INTO translate_lots (job_id, lot_seq, lot_id, mode, languages,
                                            description_en, assessment, missing_images,
                                            assessed_at, deadline_at)
                SELECT job_id, lot_seq, lot_id, mode, languages, description_en, assessment,
                       missing_images, assessed_at, deadline_at
                FROM x WHERE NOT cancelled
                ON CONFLICT (job_id, lot_seq) DO NOTHING RETURNING job_id, lot_seq),
            m AS (
                UPDATE lots SET status = 'translating', updated_at = now() FROM l
                WHERE lots.job_id = l.job_id AND lots.lot_seq = l.lot_seq
                  AND lots.status IN ('pending', 'assessing', 'assessed')),
            w AS (
                INSERT INTO translate_work (job_id, lot_seq, language, priority, deadline_at,
                                            status, lease_owner, lease_until, attempts)
                SELECT x.job_id, x.lot_seq, lang, x.priority, x.deadline_at,
                       CASE WHEN x.lease THEN 'running' ELSE 'queued' END,
                       CASE WHEN x.lease THEN $2::text END,
                       CASE WHEN x.lease THEN now() + make_interval(secs => $3::float8) END,
                       CASE WHEN x.lease THEN 1 ELSE 0 END
                FROM x JOIN l USING (job_id, lot_seq), unnest(x.work_languages) AS lang
                ON CONFLICT (job_id, lot_seq, language) DO NOTHING RETURNING *)
            SELECT (SELECT pg_notify('{notify}', '') FROM w WHERE status = 'queued' LIMIT 1)
                       AS notified,
                   (SELECT coalesce(jsonb_agg(jsonb_build_array(x.job_id, x.lot_seq)), '[]')
                    FROM x JOIN l USING (job_id, lot_seq)
                    WHERE cardinality(x.work_languages) = 0) AS english_only,
                   (SELECT count(*) FROM x WHERE cancelled) AS dropped,
                   leased.*
            FROM (SELECT 1) AS one LEFT JOIN (
                {LEASED_WITH_SOURCE} FROM w JOIN x USING (job_id, lot_seq)
                WHERE w.status = 'running') AS leased ON true""",
        rows,  # the pool's jsonb codec encodes it (gen_common.db)
        lease.owner if lease else None,
        lease.lease_s if lease else None,
    )
    first = found[0]
    return Intake(
        english_only=[(uuid.UUID(job), int(seq)) for job, seq in first["english_only"]],
        dropped=int(first["dropped"]),
        leased=[r for r in found if r["id"] is not None],
    )
