"""SQL of the translate stage's intake: what a LotAssessed writes (the translate_lots row, lots
status 'translating', a work row per language, the workers' NOTIFY), for one event or for a
consumed batch's events in one statement. Plain functions taking a connection; the consumer's
batch transaction holds them.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from gen_common.db import Conn
from gen_common.events import LotAssessed

# Whether the lot or its job was cancelled (translate_cancelled_jobs, or its lots row) for a
# lot $1 = job_id, $2 = lot_seq (accept_lot) or x.job_id, x.lot_seq (accept_lots).
_CANCELLED = """EXISTS (SELECT 1 FROM translate_cancelled_jobs c WHERE c.job_id = {job})
             OR EXISTS (SELECT 1 FROM lots t WHERE t.job_id = {job} AND t.lot_seq = {seq}
                                               AND t.status = 'cancelled')"""


async def accept_lot(
    conn: Conn,
    event: LotAssessed,
    languages: Sequence[str],
    deadline: datetime | None,
    *,
    work_languages: Sequence[str],
    priority: int,
    notify: str,
) -> tuple[bool, bool]:
    """Everything a LotAssessed writes, in ONE statement (the consumer's hot path): unless the lot
    or its job was cancelled, the translate_lots row, lots.status 'translating', one work row per
    language of ``work_languages`` and the workers' NOTIFY on channel ``notify``.

    Returns ``(cancelled, inserted)``; ``inserted`` is False for a redelivery (the first delivery
    recorded everything). A lot is cancelled when translate_cancelled_jobs has its job or its lots
    row says 'cancelled'.
    """
    row = await conn.fetchrow(
        f"""WITH c AS (SELECT {_CANCELLED.format(job="$1", seq="$2")} AS cancelled),
            l AS (
                INSERT INTO translate_lots (job_id, lot_seq, lot_id, mode, languages,
                                            description_en, assessment, missing_images,
                                            assessed_at, deadline_at)
                SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 FROM c WHERE NOT c.cancelled
                ON CONFLICT (job_id, lot_seq) DO NOTHING RETURNING 1),
            m AS (
                UPDATE lots SET status = 'translating', updated_at = now()
                WHERE job_id = $1 AND lot_seq = $2
                  AND status IN ('pending', 'assessing', 'assessed')
                  AND EXISTS (SELECT 1 FROM l)),
            w AS (
                INSERT INTO translate_work (job_id, lot_seq, language, priority, deadline_at)
                SELECT $1, $2, lang, $12, $10 FROM unnest($11::text[]) AS lang
                WHERE EXISTS (SELECT 1 FROM l)
                ON CONFLICT (job_id, lot_seq, language) DO NOTHING RETURNING 1)
            SELECT (SELECT cancelled FROM c) AS cancelled,
                   EXISTS (SELECT 1 FROM l) AS inserted,
                   (SELECT pg_notify('{notify}', '') FROM w LIMIT 1) AS notified""",
        event.job_id,
        event.lot_seq,
        event.lot_id,
        event.mode,
        list(languages),
        event.description_en,
        event.assessment,
        event.missing_images,
        event.occurred_at,
        deadline,
        list(work_languages),
        priority,
    )
    assert row is not None
    return bool(row["cancelled"]), bool(row["inserted"])


@dataclass(frozen=True, slots=True)
class Accepted:
    """A LotAssessed for :func:`accept_lots`, with what its consumer decided about it."""

    event: LotAssessed
    languages: list[str]  # translate_lots.languages: the requested ones, en dropped
    work_languages: list[str]  # distinct: one work row each
    deadline: datetime | None
    priority: int


async def accept_lots(
    conn: Conn, lots: Sequence[Accepted], *, notify: str
) -> list[tuple[uuid.UUID, int]]:
    """:func:`accept_lot` for several lots in ONE statement (a consumed batch); the lots travel
    as one JSON document. Returns the lots it recorded that have no language but en, so the
    caller completes them at once."""
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
        }
        for a in lots
    ]
    row = await conn.fetchrow(
        f"""WITH x AS (
                SELECT x.*, {_CANCELLED.format(job="x.job_id", seq="x.lot_seq")} AS cancelled
                FROM jsonb_to_recordset($1::jsonb) AS x(
                    job_id uuid, lot_seq int, lot_id jsonb, mode text, languages text[],
                    description_en text, assessment jsonb, missing_images text[],
                    assessed_at timestamptz, deadline_at timestamptz, work_languages text[],
                    priority smallint)),
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
                INSERT INTO translate_work (job_id, lot_seq, language, priority, deadline_at)
                SELECT x.job_id, x.lot_seq, lang, x.priority, x.deadline_at
                FROM x JOIN l USING (job_id, lot_seq), unnest(x.work_languages) AS lang
                ON CONFLICT (job_id, lot_seq, language) DO NOTHING RETURNING 1)
            SELECT (SELECT pg_notify('{notify}', '') FROM w LIMIT 1) AS notified,
                   (SELECT coalesce(jsonb_agg(jsonb_build_array(x.job_id, x.lot_seq)), '[]')
                    FROM x JOIN l USING (job_id, lot_seq)
                    WHERE cardinality(x.work_languages) = 0) AS english_only""",
        rows,  # the pool's jsonb codec encodes it (gen_common.db)
    )
    assert row is not None
    return [(uuid.UUID(job_id), int(lot_seq)) for job_id, lot_seq in row["english_only"]]
