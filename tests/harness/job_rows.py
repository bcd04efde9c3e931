"""A job's rows in some tables, without the columns that differ between equal writes."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg


async def job_rows(
    pool: asyncpg.Pool, job_id: uuid.UUID, order_by: dict[str, str], skip: set[str]
) -> dict[str, list[dict[str, Any]]]:
    """Each table of ``order_by`` (table -> ORDER BY list): the job's rows, ``skip`` dropped."""
    found = {}
    for table, order in order_by.items():
        rows = await pool.fetch(f"SELECT * FROM {table} WHERE job_id = $1 ORDER BY {order}", job_id)
        found[table] = [{k: v for k, v in r.items() if k not in skip} for r in rows]
    return found
