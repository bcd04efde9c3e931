"""A consumer process for the runtime's crash tests: records each event's effect once.

    python -m tests.harness.counting_consumer   (settings from the environment)

Each LotSubmitted becomes one ``test_effects`` row keyed by event id; a redelivered event bumps
``deliveries`` instead of adding a row, which is how duplicates are absorbed.
"""

from __future__ import annotations

from gen_common import db, kafka, service
from gen_common.db import Conn
from gen_common.events import LOTS_SUBMITTED, LotSubmitted
from gen_common.settings import ServiceSettings

TABLE = """CREATE TABLE IF NOT EXISTS test_effects (
    event_id   uuid PRIMARY KEY,
    prefix     text    NOT NULL,
    lot_seq    integer NOT NULL,
    deliveries integer NOT NULL DEFAULT 1)"""


async def record(event: LotSubmitted, conn: Conn, *, prefix: str) -> None:
    await conn.execute(
        """INSERT INTO test_effects (event_id, prefix, lot_seq) VALUES ($1, $2, $3)
           ON CONFLICT (event_id) DO UPDATE SET deliveries = test_effects.deliveries + 1""",
        event.event_id,
        prefix,
        event.lot_seq,
    )


async def run(settings: ServiceSettings) -> None:
    prefix = settings.kafka.topic_prefix

    async def handler(event: LotSubmitted, conn: Conn) -> None:
        await record(event, conn, prefix=prefix)

    async with db.open_pool(settings.db) as pool:
        await kafka.consume(
            settings.kafka,
            pool=pool,
            group="counter",
            subscriptions=[kafka.Subscription(LOTS_SUBMITTED, LotSubmitted, handler)],
        )


def main() -> None:
    settings = ServiceSettings()
    service.run(run(settings), settings.log, name="counting-consumer")


if __name__ == "__main__":
    main()
