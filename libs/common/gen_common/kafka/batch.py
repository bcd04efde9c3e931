"""One consumed batch in one PostgreSQL transaction: records decoded and routed to their
subscription's handler, dead letters for what cannot be handled.

Undecodable or schema-invalid records, records whose handler raises a
:class:`~gen_common.errors.PermanentError`, and records whose values PostgreSQL refuses (a data
exception, e.g. a NUL character in a text field) become ``dead_letter`` rows in the batch's
transaction, so the partition keeps flowing. While a handler runs, the record's trace context
and its event's job_id / lot_seq / lot_id are bound for logs (:mod:`gen_common.logs`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiokafka import TopicPartition
from pydantic import ValidationError

from gen_common import logs, tracing
from gen_common.db import DB_TROUBLE, Conn
from gen_common.errors import PermanentError
from gen_common.events import Event

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Subscription:
    """Route records of ``topic`` (base name), decoded as ``model``, to ``handler``.

    ``many`` (optional): the same decisions for several events in one go, each with its record's
    trace context, e.g. one multi-row statement instead of one per record. It takes all of a
    topic's records (every partition's) in the batch's first run; should it fail permanently,
    or with an error of PostgreSQL's other than losing it, the batch runs again with ``handler``
    per record.

    ``atomic`` (optional): whether ``many`` writes the given events with ONE statement, atomic
    by itself; a batch of only such events then runs without a transaction block (BEGIN and
    COMMIT are two of its three round trips)."""

    topic: str
    model: type[Event]
    handler: Callable[[Any, Conn], Awaitable[None]]
    many: Callable[[list[Received], Conn], Awaitable[None]] | None = None
    atomic: Callable[[list[Received]], bool] | None = None


@dataclass(frozen=True, slots=True)
class Received:
    """An event for :attr:`Subscription.many`, with the trace context of its record."""

    event: Any
    traceparent: str


async def _dead_letter(conn: Conn, group: str, record: Any, error: str) -> None:
    await conn.execute(
        """INSERT INTO dead_letter
               (consumer_group, topic, kafka_partition, kafka_offset, key, value, error)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT DO NOTHING""",
        group,
        record.topic,
        record.partition,
        record.offset,
        record.key,
        record.value,
        error[:4000],
    )
    log.warning(
        "dead-lettered record",
        extra={
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "error": error[:500],
        },
    )


def _bind(record: Any, event: Event) -> None:
    """Bind the record's trace context (a new trace if it has none) and its lot's ids."""
    tracing.bind(tracing.from_headers(record.headers) or tracing.new())
    fields: dict[str, object] = {"event_id": str(event.event_id)}
    if (job_id := getattr(event, "job_id", None)) is not None:
        fields["job_id"] = str(job_id)
        if (lot_seq := getattr(event, "lot_seq", None)) is not None:
            fields["lot_seq"] = lot_seq
        if (lot_id := getattr(event, "lot_id", None)) is not None:
            fields["lot_id"] = str(lot_id)
    logs.context.set(fields)


class _Isolate(Exception):
    """A handler failed permanently in a batch run without savepoints: run it again, isolated."""


def _code(exc: PermanentError | asyncpg.DataError) -> str:
    # PostgreSQL's data exceptions (SQLSTATE class 22, e.g. a NUL character in a text field)
    # refuse the record's values: replaying it could only fail again, so it is dead-lettered
    # instead of stalling the partition.
    return exc.code if isinstance(exc, PermanentError) else "invalid_data"


async def _handle(
    conn: Conn, group: str, sub: Subscription, record: Any, *, isolated: bool
) -> None:
    try:
        event = sub.model.model_validate_json(record.value or b"")
    except (ValidationError, ValueError) as exc:
        # Not the ids of the batch's previous record: this record has none.
        logs.context.set(None)
        tracing.bind(tracing.from_headers(record.headers) or tracing.new())
        await _dead_letter(conn, group, record, f"invalid_event: {exc}")
        return
    _bind(record, event)
    try:
        if isolated:
            async with conn.transaction():  # a savepoint: only this record's writes undone
                await sub.handler(event, conn)
        else:
            await sub.handler(event, conn)
    except (PermanentError, asyncpg.DataError) as exc:
        if not isolated:
            raise _Isolate from exc
        await _dead_letter(conn, group, record, f"{_code(exc)}: {exc}")
        return
    if log.isEnabledFor(logging.DEBUG):
        log.debug("record handled", extra={"topic": record.topic, "offset": record.offset})


def _decode(sub: Subscription, record: Any) -> Received | ValueError:
    try:
        event = sub.model.model_validate_json(record.value or b"")
    except (ValidationError, ValueError) as exc:
        return ValueError(f"invalid_event: {exc}")
    return Received(event, tracing.from_headers(record.headers) or tracing.new())


async def _run_many(conn: Conn, sub: Subscription, received: list[Received]) -> None:
    assert sub.many is not None
    try:
        await sub.many(received, conn)
    except DB_TROUBLE:
        raise
    except (PermanentError, asyncpg.PostgresError) as exc:
        raise _Isolate from exc


async def _handle_many(conn: Conn, group: str, sub: Subscription, records: list[Any]) -> None:
    received: list[Received] = []
    for record in records:
        decoded = _decode(sub, record)
        if isinstance(decoded, ValueError):
            await _dead_letter(conn, group, record, str(decoded))
            continue
        received.append(decoded)
    if received:
        await _run_many(conn, sub, received)


def _one_statement(
    by_topic: dict[str, Subscription], batches: dict[TopicPartition, list[Any]]
) -> tuple[Subscription, list[Received]] | None:
    """The batch's events when one statement writes them all: one topic's records, all valid,
    that its subscription's ``atomic`` says ``many`` writes in one statement."""
    if len({tp.topic for tp in batches}) != 1:
        return None
    sub = by_topic[next(iter(batches)).topic]
    if sub.many is None or sub.atomic is None:
        return None
    received = [_decode(sub, record) for records in batches.values() for record in records]
    valid = [r for r in received if isinstance(r, Received)]
    return (sub, valid) if len(valid) == len(received) and sub.atomic(valid) else None


async def apply(
    pool: asyncpg.Pool,
    group: str,
    by_topic: dict[str, Subscription],
    batches: dict[TopicPartition, list[Any]],
) -> None:
    """The batch in ONE transaction. Handlers run without savepoints (two round trips per
    record saved), and a topic's records go to ``many`` where its subscription has one;
    when one fails permanently the batch is rolled back and run again with ``handler`` and a
    savepoint per record, so only the failing record is dead-lettered (its handler and those
    before it run twice, as on any redelivery)."""
    runs: tuple[bool, ...] = (False, True)
    if (single := _one_statement(by_topic, batches)) is not None:
        try:  # atomic by itself: no BEGIN/COMMIT, two round trips fewer
            async with pool.acquire() as conn:
                await _run_many(conn, *single)
            return
        except _Isolate:
            runs = (True,)  # nothing was written: the isolated run finds the record to refuse
    for isolated in runs:
        together: dict[str, list[Any]] = {}  # for ``many``: a topic's records of every partition
        try:
            async with pool.acquire() as conn, conn.transaction():
                for tp, records in batches.items():
                    sub = by_topic[tp.topic]
                    if sub.many is not None and not isolated:
                        together.setdefault(tp.topic, []).extend(records)
                        continue
                    for record in records:
                        await _handle(conn, group, sub, record, isolated=isolated)
                for topic, records in together.items():
                    await _handle_many(conn, group, by_topic[topic], records)
        except _Isolate:
            continue
        return
