"""What a completed lot writes: the lots row's descriptions and totals, the job's share of the
usage and its LotTranslated in the outbox. :func:`mark_translated` writes it alone (the last of
several languages, under the lot's lock); ``results.settle_lot`` uses :func:`ctes`
inside its one statement.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from gen_common import outbox
from gen_common.db import Conn
from gen_common.events import TokenUsage

FINAL_LOT_STATES = ("completed", "failed", "cancelled")


@dataclass(frozen=True, slots=True)
class Completion:
    """What a lot's LotTranslated writes: the lots row's descriptions and totals, the event."""

    descriptions: list[dict[str, str]]
    pending: list[str]
    warnings: list[str]
    usage: TokenUsage
    event: outbox.Row
    held_s: float | None = None  # the outbox row held for this process (outbox_handoff)

    def args(self) -> tuple[Any, ...]:
        u = self.usage
        return (
            *(self.descriptions, self.pending, self.warnings, u.input_tokens, u.cached_tokens),
            *(u.output_tokens, u.reasoning_tokens, u.cost_usd, list(FINAL_LOT_STATES)),
            *self.event,
            self.held_s,
        )


def ctes(first: int, when: str) -> str:
    """CTEs writing a completed lot: the lots row (``lot``), the job's share of its usage
    (folded into jobs by gen_common.job_usage: no hot row) and its LotTranslated in the outbox
    (``o``, returning the row's id and trace context), from Completion.args() at ``$first``...
    (14 of them); ``when`` holds them back (``AND ...``)."""
    d, p, w, i, c, o, r, cost, final, topic, key, payload, trace, held = (
        f"${n}" for n in range(first, first + 14)
    )
    return f"""lot AS (
               UPDATE lots SET descriptions = {d}, pending_languages = {p}, warnings = {w},
                      input_tokens = input_tokens + {i}, cached_tokens = cached_tokens + {c},
                      output_tokens = output_tokens + {o},
                      reasoning_tokens = reasoning_tokens + {r},
                      cost_usd = cost_usd + {cost}, updated_at = now()
               WHERE job_id = $1 AND lot_seq = $2 AND status <> ALL({final}::text[]) {when}
               RETURNING job_id),
           usage AS (
               INSERT INTO job_usage (job_id, input_tokens, cached_tokens, output_tokens,
                                      reasoning_tokens, cost_usd)
               SELECT job_id, {i}, {c}, {o}, {r}, {cost} FROM lot),
           o AS (
               INSERT INTO outbox (topic, key, payload, traceparent, held_until)
               SELECT {topic}, {key}, {payload}, coalesce({trace}::text,
                   (SELECT traceparent FROM lots WHERE job_id = $1 AND lot_seq = $2)),
                   now() + make_interval(secs => {held}::float8)
               WHERE TRUE {when}
               RETURNING id, traceparent)"""


async def mark_translated(conn: Conn, job_id: uuid.UUID, lot_seq: int, c: Completion) -> None:
    """The lot's completion and its LotTranslated in the outbox, in one statement (inside the
    caller's transaction: the relay publishes it, ``c`` holds nothing)."""
    assert c.held_s is None
    await conn.execute(
        f"""WITH marked AS (UPDATE translate_lots SET translated_at = now()
                           WHERE job_id = $1 AND lot_seq = $2),
           {ctes(3, "")}
           SELECT pg_notify('{outbox.CHANNEL}', '')""",
        job_id,
        lot_seq,
        *c.args(),
    )
