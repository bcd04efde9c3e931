"""gen_common.tracing (W3C traceparent) and gen_common.logs (JSON lines with the bound ids)."""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import uuid

import asyncpg
import pytest
from gen_common import logs, outbox, tracing
from gen_common.db import Conn
from gen_common.events import LotFailed
from gen_common.settings import LogSettings


def test_child_keeps_trace_id_and_flags_with_a_new_span() -> None:
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    kid = tracing.child(parent)
    assert tracing.valid(kid)
    assert kid.startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")
    assert kid.endswith("-01")
    assert kid != parent
    assert tracing.trace_id(kid) == "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
    ],
)
def test_invalid_contexts_are_refused_and_start_a_new_trace(bad: str) -> None:
    assert not tracing.valid(bad)
    assert tracing.trace_id(bad) is None
    assert tracing.valid(tracing.child(bad))
    assert tracing.from_headers([("traceparent", bad.encode())]) is None


def test_from_headers_reads_the_traceparent_header() -> None:
    tp = tracing.new()
    assert tracing.from_headers([("other", b"x"), ("traceparent", tp.encode())]) == tp
    assert tracing.from_headers(None) is None


async def test_bound_context_stays_in_its_task() -> None:
    tp = tracing.new()

    async def inner() -> str | None:
        tracing.bind(tp)
        logs.bind_lot(job_id="j", lot_seq=1, lot_id=7)
        return tracing.current()

    assert await asyncio.create_task(inner()) == tp
    assert tracing.current() is None
    assert logs.context.get() is None


def test_json_lines_carry_the_bound_ids_and_the_trace_id() -> None:
    formatter = logs.JsonFormatter("vision")
    tp = tracing.new()
    job = uuid.uuid4()

    def line() -> dict[str, object]:
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello %s", ("you",), None)
        record.work = 5  # an ``extra`` field
        parsed: dict[str, object] = json.loads(formatter.format(record))
        return parsed

    def bound_line() -> dict[str, object]:
        tracing.bind(tp)
        logs.bind_lot(job_id=job, lot_seq=3, lot_id="L-3")
        return line()

    shown = contextvars.copy_context().run(bound_line)
    assert shown["msg"] == "hello you"
    assert shown["service"] == "vision"
    assert shown["job_id"] == str(job)
    assert shown["lot_id"] == "L-3"
    assert shown["lot_seq"] == 3
    assert shown["trace_id"] == tracing.trace_id(tp)
    assert shown["work"] == 5
    bare = line()
    assert "job_id" not in bare
    assert "trace_id" not in bare


def test_configure_installs_the_json_formatter() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logs.configure(LogSettings(level="DEBUG"), "status")
        assert isinstance(root.handlers[0].formatter, logs.JsonFormatter)
        assert logging.getLogger("aiokafka").level == logging.WARNING
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)


@pytest.mark.pg
async def test_outbox_rows_keep_the_bound_context_else_the_lots(pool: asyncpg.Pool) -> None:
    job = uuid.uuid4()
    lot_trace = tracing.new()
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            await _outbox_rows(conn, job, lot_trace)
        finally:
            tracing.bind(None)
            await tx.rollback()  # leaves no outbox row for the other tests' relays


async def _outbox_rows(conn: Conn, job: uuid.UUID, lot_trace: str) -> None:
    await conn.execute(
        """INSERT INTO jobs (job_id, client_id, mode, languages, total_lots)
           VALUES ($1, 'c', 'batch', '{en}', 2)""",
        job,
    )
    for seq, traceparent in ((0, lot_trace), (1, None)):  # as vision's ensure_lot leaves them
        await conn.execute(
            "INSERT INTO lots (job_id, lot_seq, lot_id, traceparent) VALUES ($1, $2, '1', $3)",
            job,
            seq,
            traceparent,
        )

    def failed(seq: int) -> LotFailed:
        return LotFailed(job_id=job, lot_seq=seq, lot_id="1", stage="vision", reason="x")

    await outbox.add(conn, failed(0))  # a worker: nothing bound, the lot's context
    await outbox.add(conn, failed(1))  # a lot without a context: none
    bound = tracing.new()
    tracing.bind(bound)
    try:
        await outbox.add(conn, failed(0))  # a handler: the bound context
    finally:
        tracing.bind(None)
    rows = await conn.fetch(
        "SELECT traceparent FROM outbox WHERE key LIKE $1 || ':%' ORDER BY id", str(job)
    )
    assert [r["traceparent"] for r in rows] == [lot_trace, None, bound]
