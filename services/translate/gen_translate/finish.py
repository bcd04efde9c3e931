"""Store one (lot, language) outcome; the transaction storing a lot's last one emits LotTranslated.

Used by the realtime workers and reusable by a Batch API path: the caller opens the transaction,
calls :func:`record_outcome`, and commits. Finishers of the same lot serialise on the lot's row
lock, taken *after* their own result row is written, so the last one to get the lock sees every
committed result, and ``translated_at`` makes the event exactly-once.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg
from gen_common import outbox
from gen_common.db import Conn
from gen_common.events import Description, LotTranslated, TokenUsage
from gen_common.outbox_handoff import HOLD_S, Handoff

from gen_translate import completion, results
from gen_translate.results import Outcome

EN = "en"
# Warning codes in LotTranslated.warnings (the languages are in pending_languages):
TIME_LIMIT = "translation_time_limit_exceeded"  # a sync lot's budget ran out
FAILED = "translation_failed"  # a language failed permanently (refusal, 4xx, retries spent)
WARNING_OF = {"time_limit": TIME_LIMIT, "failed": FAILED}


def targets(languages: Sequence[str]) -> list[str]:
    """Requested languages other than en (any case), in order, duplicates kept."""
    return [code for code in languages if code.lower() != EN]


def distinct(languages: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(languages))


def build_event(lot: asyncpg.Record, stored: Sequence[results.Stored]) -> LotTranslated:
    """LotTranslated of a lot whose every language has an outcome: en first, request order."""
    by_language = {r["language"]: r for r in stored}
    simulated = True if (lot["assessment"] or {}).get("simulated") else None
    descriptions = [Description(language=EN, damages=lot["description_en"], simulated=simulated)]
    pending: list[str] = []
    warnings: list[str] = []
    for code in lot["languages"]:
        row = by_language[code]
        if row["outcome"] == "translated":
            descriptions.append(
                Description(language=code, damages=row["text"], simulated=simulated)
            )
            continue
        if code not in pending:
            pending.append(code)
        if (warning := WARNING_OF[row["outcome"]]) not in warnings:
            warnings.append(warning)
    usage = TokenUsage(
        input_tokens=sum(r["input_tokens"] for r in stored),
        cached_tokens=sum(r["cached_tokens"] for r in stored),
        output_tokens=sum(r["output_tokens"] for r in stored),
        reasoning_tokens=sum(r["reasoning_tokens"] for r in stored),
        cost_usd=float(sum(r["cost_usd"] for r in stored)),
    )
    return LotTranslated(
        job_id=lot["job_id"],
        lot_seq=lot["lot_seq"],
        lot_id=lot["lot_id"],
        descriptions=descriptions,
        missing_images=list(lot["missing_images"]),
        pending_languages=pending,
        warnings=warnings,
        usage=usage,
    )


async def complete_if_done(
    conn: Conn, job_id: uuid.UUID, lot_seq: int, *, locked: asyncpg.Record | None = None
) -> LotTranslated | None:
    """Emit the lot's LotTranslated if every language has an outcome and none was emitted.
    ``locked``: the lot's row, already locked by this transaction (results.settle)."""
    lot = locked or await results.lock_lot(conn, job_id, lot_seq)
    if lot is None or lot["translated_at"] is not None or lot["cancelled"]:
        return None
    stored = await results.results_of(conn, job_id, lot_seq)
    if {r["language"] for r in stored} < set(lot["languages"]):
        return None
    event = build_event(lot, stored)
    await completion.mark_translated(conn, job_id, lot_seq, completion_of(event))
    return event


def covers_lot(lot: Mapping[str, Any] | asyncpg.Record, outcomes: Sequence[Outcome]) -> bool:
    """Whether ``outcomes`` are for every language ``lot`` asks for (no other finisher)."""
    return set(lot["languages"]) == {o.language for o in outcomes}


async def settle_lot(
    conn: Conn,
    *,
    owner: str,
    claimed: Sequence[asyncpg.Record],
    outcomes: Sequence[Outcome],
    handoff: Handoff | None = None,
) -> None:
    """Store the outcomes of all of a lot's languages and complete the lot, in one statement
    (results.settle_lot); ``claimed[i]`` is the work row of ``outcomes[i]`` as claimed, with its
    lot's fields (store.CLAIM_WITH_SOURCE). With ``handoff`` this process publishes the
    LotTranslated itself, right after (gen_common.outbox_handoff). Should a lease have been lost
    in between (the lot not marked though results were stored), the locked completion check
    runs instead."""
    event = build_event(claimed[0], [results.as_stored(o) for o in outcomes])
    done = completion_of(event, held_s=None if handoff is None else HOLD_S)
    settled = await results.settle_lot(
        conn,
        owner=owner,
        work_ids=[row["id"] for row in claimed],
        outcomes=list(outcomes),
        done=done,
    )
    if handoff is not None and settled.written is not None:
        handoff.hand([settled.written])
    if settled.settled and not settled.marked:
        async with conn.transaction():
            await complete_if_done(conn, outcomes[0].job_id, outcomes[0].lot_seq)


def completion_of(event: LotTranslated, *, held_s: float | None = None) -> completion.Completion:
    return completion.Completion(
        descriptions=[d.model_dump(exclude_none=True) for d in event.descriptions],
        pending=event.pending_languages,
        warnings=event.warnings,
        usage=event.usage,
        event=outbox.row_of(event),
        held_s=held_s,
    )


async def record_outcome(conn: Conn, outcome: Outcome) -> LotTranslated | None:
    """Store one translation (or its failure); returns the event if this finished the lot."""
    await results.insert_result(conn, outcome)
    return await complete_if_done(conn, outcome.job_id, outcome.lot_seq)
