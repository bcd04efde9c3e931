"""Outbox rows published by their writer's own process, right after the commit.

The relay (:mod:`gen_common.outbox`) costs an event three round trips and a wake-up after its
commit: the NOTIFY, then BEGIN, DELETE ... RETURNING and COMMIT around the publish; with two
relays listening, the one that loses the race runs an empty pass too. A writer that holds a
:class:`Handoff` instead writes its row *held* (``held_until`` = now + :data:`HOLD_S`, no NOTIFY),
and after its commit hands the row over: the handoff publishes it at once with ``acks=all`` and
deletes what it published in one statement. The relays' passes skip held rows until the hold
has passed, so a row is published once; should the process die, or Kafka refuse, before the
publish, the passes publish it after the hold (at-least-once, as before). A crash between the
publish and the delete publishes it again, which consumers absorb by their unique keys.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from gen_common.db import DB_TROUBLE
from gen_common.kafka import Publisher

log = logging.getLogger(__name__)

HOLD_S = 10.0  # how long the relays leave a handed-over row to its writer's process


@dataclass(frozen=True, slots=True)
class Written:
    """A held outbox row as its writer wrote it (the columns the relay would have read)."""

    id: int
    topic: str
    key: str
    payload: bytes
    traceparent: str | None


class Handoff:
    def __init__(self, pool: asyncpg.Pool, publisher: Publisher) -> None:
        self._pool, self._publisher = pool, publisher
        self._queue: list[Written] = []
        self._ready = asyncio.Event()

    def hand(self, rows: Sequence[Written]) -> None:
        """Publish ``rows`` now; call only after the transaction that wrote them committed."""
        if rows:
            self._queue.extend(rows)
            self._ready.set()

    async def run(self) -> None:
        """Publish and delete handed-over rows until cancelled (what is left is held rows,
        which the relays' passes publish after the hold)."""
        while True:
            await self._ready.wait()
            self._ready.clear()
            rows, self._queue = self._queue, []
            try:
                await asyncio.gather(
                    *[
                        self._publisher.publish_raw(
                            r.topic, r.key, r.payload, traceparent=r.traceparent
                        )
                        for r in rows
                    ]
                )
            except Exception as exc:  # any failure: the rows are safe in the outbox
                log.warning(
                    "handoff publish failed; the relays take over after the hold",
                    extra={"error": repr(exc)},
                )
                continue
            try:
                async with self._pool.acquire() as conn:
                    await conn.execute(
                        "DELETE FROM outbox WHERE id = ANY($1::bigint[])", [r.id for r in rows]
                    )
            except DB_TROUBLE as exc:  # published; the relay publishes them again after the hold
                log.warning("handoff delete failed", extra={"error": repr(exc)})
