"""BatchSource building blocks for work tables shaped like :mod:`gen_common.jobs`.

Every write checks ``status = 'running' AND lease_owner = <the batch owner>``, so a row the stage
cancelled (or a reaper requeued) meanwhile is never overwritten. A stage's BatchSource keeps its
own claim filter, request building and result storing, and delegates the queue moves here.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from gen_common import jobs
from gen_common.batch_source import LineError, batch_owner, check_stage
from gen_common.db import Conn


class JobsTable:
    """The batch engine's moves on one ``gen_common.jobs`` work table of one stage."""

    def __init__(self, table: str, stage: str) -> None:
        self.table = jobs.table_name(table)
        self.owner = batch_owner(check_stage(stage))

    async def claim(
        self, conn: Conn, *, owner: str, lease_s: float, limit: int, where: str
    ) -> list[asyncpg.Record]:
        return await jobs.claim(
            conn, self.table, owner=owner, lease_s=lease_s, limit=limit, where=where
        )

    async def row(self, conn: Conn, work_id: int) -> asyncpg.Record | None:
        """The row if the batch owner still holds it (else None: cancelled or taken over)."""
        return await conn.fetchrow(
            f"""SELECT * FROM {self.table}
                WHERE id = $1 AND status = 'running' AND lease_owner = $2""",
            work_id,
            self.owner,
        )

    async def hold(
        self, conn: Conn, work_ids: Sequence[int], *, owner: str, lease_s: float
    ) -> set[int]:
        """Extend the lease of the rows still held; rows whose job (``jobs.status``) or lot
        (``lots.status``) was cancelled meanwhile become 'cancelled' instead and are not returned,
        so no batch line is ever submitted for them."""
        t = self.table
        rows = await conn.fetch(
            f"""WITH gone AS (
                    UPDATE {t} w SET status = 'cancelled', lease_owner = NULL, lease_until = NULL,
                           last_error = 'cancelled'
                    WHERE w.id = ANY($1::bigint[]) AND w.status = 'running'
                      AND w.lease_owner = $2
                      AND (EXISTS (SELECT 1 FROM jobs j
                                   WHERE j.job_id = w.job_id AND j.status = 'cancelled')
                           OR EXISTS (SELECT 1 FROM lots l
                                      WHERE l.job_id = w.job_id AND l.lot_seq = w.lot_seq
                                        AND l.status = 'cancelled'))
                    RETURNING w.id)
                UPDATE {t} SET lease_until = now() + make_interval(secs => $3)
                WHERE id = ANY($1::bigint[]) AND status = 'running' AND lease_owner = $2
                  AND id NOT IN (SELECT id FROM gone)
                RETURNING id""",
            list(work_ids),
            owner,
            lease_s,
        )
        return {r["id"] for r in rows}

    async def release(
        self, conn: Conn, work_ids: Sequence[int], *, delay_s: float, reason: str
    ) -> None:
        """Back to queued without spending an attempt (never sent, expired, token limit)."""
        await conn.execute(
            f"""UPDATE {self.table} SET status = 'queued', lease_owner = NULL, lease_until = NULL,
                       attempts = greatest(attempts - 1, 0), last_error = $4,
                       next_attempt_at = now() + make_interval(secs => $3)
                WHERE id = ANY($1::bigint[]) AND status = 'running' AND lease_owner = $2""",
            list(work_ids),
            self.owner,
            delay_s,
            reason[:2000],
        )

    async def retry(self, conn: Conn, work_id: int, *, delay_s: float, error: LineError) -> bool:
        return await jobs.retry_later(
            conn,
            self.table,
            job_id=work_id,
            owner=self.owner,
            delay_s=delay_s,
            error=f"{error.code}: {error.message}",
        )

    async def finish(self, conn: Conn, work_id: int) -> bool:
        return await jobs.finish(conn, self.table, job_id=work_id, owner=self.owner)

    async def fail(self, conn: Conn, work_id: int, error: str) -> bool:
        return await jobs.fail(conn, self.table, job_id=work_id, owner=self.owner, error=error)

    async def cancel_held(self, conn: Conn, job_id: uuid.UUID) -> int:
        """Cancel the job's rows the batch engine holds (the stage cancels its queued ones)."""
        status = await conn.execute(
            f"""UPDATE {self.table} SET status = 'cancelled', lease_owner = NULL,
                       lease_until = NULL
                WHERE job_id = $1 AND status = 'running' AND lease_owner = $2""",
            job_id,
            self.owner,
        )
        return int(status.split()[-1])


class TableBackedSource:
    """The BatchSource moves that only pass through to the stage's :class:`JobsTable`."""

    _table: JobsTable

    async def hold(
        self, conn: Conn, work_ids: Sequence[int], *, owner: str, lease_s: float
    ) -> set[int]:
        return await self._table.hold(conn, work_ids, owner=owner, lease_s=lease_s)

    async def release(
        self, conn: Conn, work_ids: Sequence[int], *, delay_s: float, reason: str
    ) -> None:
        await self._table.release(conn, work_ids, delay_s=delay_s, reason=reason)

    async def retry(self, conn: Conn, work_id: int, *, delay_s: float, error: LineError) -> None:
        await self._table.retry(conn, work_id, delay_s=delay_s, error=error)
