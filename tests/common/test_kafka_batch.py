"""gen_common.kafka.batch: a consumed batch in one transaction, a subscription's ``many``
handler, and the run again record by record when it fails; on real PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import asyncpg
import pytest
from aiokafka import TopicPartition
from gen_common.db import Conn
from gen_common.errors import PermanentError
from gen_common.events import LotSubmitted
from gen_common.kafka import Received, Subscription, encode
from gen_common.kafka.batch import apply

pytestmark = pytest.mark.pg


@dataclass
class Record:  # the fields of aiokafka's ConsumerRecord the batch reads
    topic: str
    offset: int
    value: bytes
    partition: int = 0
    key: bytes = b"k"
    headers: list[tuple[str, bytes]] = field(default_factory=list)


@dataclass
class Handlers:
    table: str
    refuse_many: bool = False
    refuse_seq: int | None = None
    many_calls: list[int] = field(default_factory=list)
    one_calls: list[int] = field(default_factory=list)

    async def one(self, event: LotSubmitted, conn: Conn) -> None:
        self.one_calls.append(event.lot_seq)
        if event.lot_seq == self.refuse_seq:
            raise PermanentError("refused")
        await conn.execute(
            f"INSERT INTO {self.table} VALUES ($1, $2)", event.lot_seq, event.additional_info
        )

    async def many(self, received: list[Received], conn: Conn) -> None:
        self.many_calls.append(len(received))
        await conn.executemany(
            f"INSERT INTO {self.table} VALUES ($1, $2)",
            [(r.event.lot_seq, r.event.additional_info) for r in received],
        )
        if self.refuse_many:
            raise PermanentError("one of them is refused")


async def _run(
    pool: asyncpg.Pool,
    handlers: Handlers,
    values: list[bytes],
    atomic: Callable[[list[Received]], bool] | None = None,
) -> list[int]:
    """Apply ``values`` as one partition's records of the topic ``<table>.lots``."""
    topic = f"{handlers.table}.lots"
    await pool.execute(f"CREATE TABLE {handlers.table} (seq int, info text)")
    sub = Subscription(topic, LotSubmitted, handlers.one, many=handlers.many, atomic=atomic)
    records = [Record(topic, offset, value) for offset, value in enumerate(values)]
    await apply(pool, "g", {topic: sub}, {TopicPartition(topic, 0): records})
    rows = await pool.fetch(f"SELECT seq FROM {handlers.table} ORDER BY seq")
    return [r["seq"] for r in rows]


def _with_a_nul() -> list[bytes]:
    """Three lots, the second with a NUL character: valid JSON, no PostgreSQL text."""
    job = uuid.uuid4()
    return [
        encode(
            LotSubmitted(
                job_id=job, lot_seq=i, lot_id=i, images=[], languages=["en"], additional_info=info
            )
        )
        for i, info in enumerate(["ok", "nul \x00 here", "fine"])
    ]


def _lots(n: int) -> list[bytes]:
    job = uuid.uuid4()
    return [
        encode(LotSubmitted(job_id=job, lot_seq=i, lot_id=i, images=[], languages=["en"]))
        for i in range(n)
    ]


async def test_a_partitions_records_go_to_many_in_one_call(pool: asyncpg.Pool, unique: str) -> None:
    handlers = Handlers(f"batch_{unique}")
    values = _lots(3)
    values.insert(1, b"not json")  # dead-lettered on the way, the rest still in one call
    assert await _run(pool, handlers, values) == [0, 1, 2]
    assert (handlers.many_calls, handlers.one_calls) == ([3], [])
    dead = await pool.fetch(
        "SELECT kafka_offset FROM dead_letter WHERE topic = $1", f"{handlers.table}.lots"
    )
    assert [r["kafka_offset"] for r in dead] == [1]


async def test_a_failing_many_runs_the_batch_again_record_by_record(
    pool: asyncpg.Pool, unique: str
) -> None:
    handlers = Handlers(f"batch_{unique}", refuse_many=True, refuse_seq=1)
    assert await _run(pool, handlers, _lots(3)) == [0, 2]  # many's writes were rolled back
    assert (handlers.many_calls, handlers.one_calls) == ([3], [0, 1, 2])


async def test_every_partitions_records_of_a_topic_go_in_one_call(
    pool: asyncpg.Pool, unique: str
) -> None:
    handlers = Handlers(f"batch_{unique}")
    topic = f"{handlers.table}.lots"
    await pool.execute(f"CREATE TABLE {handlers.table} (seq int, info text)")
    sub = Subscription(topic, LotSubmitted, handlers.one, many=handlers.many)
    values = _lots(4)
    batches = {
        TopicPartition(topic, p): [Record(topic, o, values[2 * p + o], partition=p) for o in (0, 1)]
        for p in (0, 1)
    }
    await apply(pool, "g", {topic: sub}, batches)
    assert handlers.many_calls == [4]
    assert await pool.fetchval(f"SELECT count(*) FROM {handlers.table}") == 4


async def test_a_record_whose_values_postgresql_refuses_is_dead_lettered(
    pool: asyncpg.Pool, unique: str
) -> None:
    """A NUL character is valid JSON and a valid str, but no PostgreSQL text: the record would
    fail on every replay, so it goes to dead_letter and the rest of the batch commits."""
    handlers = Handlers(f"batch_{unique}")
    values = _with_a_nul()
    assert await _run(pool, handlers, values) == [0, 2]
    assert handlers.one_calls == [0, 1, 2]  # many failed, then record by record
    dead = await pool.fetch(
        "SELECT kafka_offset, error FROM dead_letter WHERE topic = $1", f"{handlers.table}.lots"
    )
    assert [r["kafka_offset"] for r in dead] == [1]
    assert dead[0]["error"].startswith("invalid_data: ")


@dataclass
class OneStatement(Handlers):
    """``many`` as a single statement, reporting whether it ran in a transaction block."""

    in_transaction: list[bool] = field(default_factory=list)

    async def many(self, received: list[Received], conn: Conn) -> None:
        self.many_calls.append(len(received))
        self.in_transaction.append(conn.is_in_transaction())
        await conn.execute(
            f"INSERT INTO {self.table} SELECT * FROM unnest($1::int[], $2::text[])",
            [r.event.lot_seq for r in received],
            [r.event.additional_info for r in received],
        )


def _one_statement(_: list[Received]) -> bool:
    return True


async def test_a_many_of_one_statement_runs_without_a_transaction_block(
    pool: asyncpg.Pool, unique: str
) -> None:
    handlers = OneStatement(f"batch_{unique}")
    assert await _run(pool, handlers, _lots(3), _one_statement) == [0, 1, 2]
    assert handlers.in_transaction == [False]


async def test_a_batch_is_one_transaction_when_many_is_not_one_statement_or_a_record_is_bad(
    pool: asyncpg.Pool, unique: str
) -> None:
    handlers = OneStatement(f"batch_{unique}")
    assert await _run(pool, handlers, _lots(2), lambda _: False) == [0, 1]
    assert handlers.in_transaction == [True]
    handlers = OneStatement(f"batch2_{unique}")
    values = _lots(2)
    values.insert(1, b"not json")  # dead-lettered in the same transaction as the others
    assert await _run(pool, handlers, values, _one_statement) == [0, 1]
    assert handlers.in_transaction == [True]


async def test_a_refused_statement_of_many_runs_again_record_by_record(
    pool: asyncpg.Pool, unique: str
) -> None:
    handlers = OneStatement(f"batch_{unique}")
    values = _with_a_nul()
    assert await _run(pool, handlers, values, _one_statement) == [0, 2]
    assert (handlers.in_transaction, handlers.one_calls) == ([False], [0, 1, 2])
    dead = await pool.fetch(
        "SELECT kafka_offset FROM dead_letter WHERE topic = $1", f"{handlers.table}.lots"
    )
    assert [r["kafka_offset"] for r in dead] == [1]
