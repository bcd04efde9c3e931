"""The transactional outbox: write an event in the caller's transaction, publish it after.

:func:`add` inserts the event's bytes into ``outbox`` inside the transaction that changes the
state the event announces, and notifies the relay. :func:`relay` publishes waiting rows in id
order with ``acks=all`` and deletes them once acknowledged. A crash between the two re-publishes
(at-least-once); consumers absorb the duplicate by their unique keys. Rows a writer's own
process publishes right after its commit (:mod:`gen_common.outbox_handoff`) are held from the
passes for a while, and published by them only if that did not happen.

Each row keeps the W3C trace context it was written in (:mod:`gen_common.tracing`): the bound
one, else its lot's (``lots.traceparent``, for workers that emit outside any consumed record); the
relay publishes the row as a child of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

import asyncpg

from gen_common import tracing
from gen_common.db import DB_TROUBLE, Conn
from gen_common.events import TOPIC_OF, Event, key_of
from gen_common.kafka import Publisher, encode

log = logging.getLogger(__name__)
CHANNEL = "gen_outbox"


Row = tuple[str, str, bytes, str | None]  # topic, key, payload, traceparent


def row_of(event: Event) -> Row:
    """The outbox columns of ``event``, for a store that writes its outbox row inside a larger
    statement of its own (that statement also runs ``pg_notify(CHANNEL, '')`` when it wrote)."""
    return TOPIC_OF[event.type], key_of(event), encode(event), tracing.current()


async def add(conn: Conn, event: Event) -> None:
    """Insert the event and queue the relay's NOTIFY (delivered at commit): one round trip."""
    await conn.execute(
        f"""WITH row AS (
                INSERT INTO outbox (topic, key, payload, traceparent)
                VALUES ($1, $2, $3, coalesce($4::text,
                    (SELECT traceparent FROM lots WHERE job_id = $5 AND lot_seq = $6))))
            SELECT pg_notify('{CHANNEL}', '')""",
        *row_of(event),
        getattr(event, "job_id", None),
        getattr(event, "lot_seq", None),
    )


async def add_many(conn: Conn, events: list[Event]) -> None:
    if not events:
        return
    await conn.copy_records_to_table(
        "outbox",
        columns=["topic", "key", "payload", "traceparent"],
        records=[(TOPIC_OF[e.type], key_of(e), encode(e), tracing.current()) for e in events],
    )
    await conn.execute(f"NOTIFY {CHANNEL}")


@dataclass(slots=True)
class Cursor:
    """Where a relay's pass starts reading. The outbox is a queue table: between two vacuums its
    id index fills with the entries of rows already published and deleted, and a pass that starts
    from the lowest id walks all of them (1,370 buffers per pass in bench_pipeline). A pass starts
    ``lookback`` ids below the highest id known published instead: the last id of a full batch,
    else the sequence's last id (a short pass read every row committed up to it, or another
    relay took them: with two relays, the ids one relay published trailed behind the head and
    its passes walked 1,450 buffers each). Rows commit out of id order, so a row that commits
    later than ``lookback`` newer ones is read by the full pass that runs at least every
    ``full_scan_s``, after every idle poll, and first."""

    lookback: int = 200
    full_scan_s: float = 1.0
    floor: int = 0
    _full_next: bool = True
    _full_at: float = field(default=float("-inf"))

    def start(self) -> int:
        """The id a pass reads above: 0 for a full pass."""
        now = time.monotonic()
        if self._full_next or now - self._full_at >= self.full_scan_s:
            self._full_next, self._full_at = False, now
            return 0
        return self.floor

    def saw(self, top: int) -> None:
        self.floor = max(self.floor, top - self.lookback)

    def idle(self) -> None:
        self._full_next = True


async def publish_pending(
    pool: asyncpg.Pool, publisher: Publisher, *, batch: int = 500, cursor: Cursor | None = None
) -> int:
    """Publish up to ``batch`` waiting events (from ``cursor``'s start, else all); returns how
    many were published.

    The statement that reads the rows also deletes (and so locks) them; the transaction commits
    only once every event is acknowledged, so a failed publish rolls the delete back.
    """
    async with pool.acquire() as conn, conn.transaction():
        # ``head``, the id the outbox's sequence gave out last, comes back even when no row
        # does; a literal LIMIT keeps the generic plan (see jobs.claim)
        found = await conn.fetch(
            f"""WITH d AS (
                    DELETE FROM outbox WHERE id IN (
                        SELECT id FROM outbox WHERE id > $1
                          AND (held_until IS NULL OR held_until < now())
                        ORDER BY id LIMIT {int(batch)}
                        FOR UPDATE SKIP LOCKED)
                    RETURNING id, topic, key, payload, traceparent)
                SELECT s.head, d.* FROM (SELECT last_value AS head FROM outbox_id_seq) s
                LEFT JOIN d ON true""",
            cursor.start() if cursor else 0,
        )
        rows = sorted((r for r in found if r["id"] is not None), key=lambda r: int(r["id"]))
        if not rows:
            if cursor:  # every row up to head was published, by this relay or another one
                cursor.saw(int(found[0]["head"]))
            return 0
        await asyncio.gather(
            *[
                publisher.publish_raw(
                    r["topic"], r["key"], bytes(r["payload"]), traceparent=r["traceparent"]
                )
                for r in rows
            ]
        )
    if cursor:  # a full batch may have left rows above it; a short one read up to head
        cursor.saw(int(rows[-1]["id"] if len(rows) == batch else found[0]["head"]))
    return len(rows)


async def relay(
    pool: asyncpg.Pool,
    publisher: Publisher,
    *,
    idle_s: float = 1.0,
    batch: int = 500,
    cursor: Cursor | None = None,
) -> None:
    """Publish outbox rows until cancelled; wakes on NOTIFY, polls every ``idle_s`` anyway."""
    wake = asyncio.Event()
    cursor = cursor or Cursor()

    def on_notify(*_: object) -> None:
        wake.set()

    async with pool.acquire() as listener:
        await listener.add_listener(CHANNEL, on_notify)
        try:
            while True:
                # Cleared BEFORE the pass: a NOTIFY that lands while a pass finds nothing (its
                # transaction committed just after our read) still wakes the next wait at once.
                wake.clear()
                try:
                    # only a full batch may have left rows behind: after a short one, a row
                    # committed since the read has notified (the wait returns at once)
                    if await publish_pending(pool, publisher, batch=batch, cursor=cursor) == batch:
                        continue
                except DB_TROUBLE as exc:
                    log.warning("outbox relay failed; retrying", extra={"error": repr(exc)})
                try:
                    await asyncio.wait_for(wake.wait(), idle_s)
                except TimeoutError:
                    cursor.idle()  # an idle poll reads everything
        finally:
            with contextlib.suppress(*DB_TROUBLE, asyncpg.PostgresError):
                await listener.remove_listener(CHANNEL, on_notify)
