"""What a translate worker takes: one leased (lot, language) row, or every language of a lot
at once, whose outcomes are stored and the lot completed in one statement (results.settle_lot).
Both the claims (gen_translate.worker) and the intake's own leases (gen_translate.handler) hand
their rows out this way.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg


def by_lot(rows: Sequence[asyncpg.Record]) -> list[list[asyncpg.Record]]:
    """The claimed rows as workers take them: together, the rows of a lot when they are all its
    languages (their outcomes are stored and the lot completed in one statement); else one by
    one."""
    lots: dict[tuple[object, int], list[asyncpg.Record]] = {}
    for row in rows:
        lots.setdefault((row["job_id"], row["lot_seq"]), []).append(row)
    items: list[list[asyncpg.Record]] = []
    for group in lots.values():
        lot = group[0]
        if lot["has_source"] and set(lot["languages"]) == {r["language"] for r in group}:
            items.append(group)
        else:
            items.extend([row] for row in group)
    return items
