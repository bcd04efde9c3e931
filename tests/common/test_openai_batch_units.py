"""The Batch engine's decisions: line classification, packing, bounded retries (real PG table)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import orjson
import pytest
from gen_common.batch_lines import FailedBatch, line_error, settle_failure
from gen_common.batch_pack import LINE_OVERHEAD, estimate_tokens, pack
from gen_common.openai_batch import BatchRequest, LineError
from openai.types import Batch

from tests.common.openai_batch_support import TableSource, add_items, create_table, options


def _http_line(status: int, error: dict[str, Any]) -> dict[str, Any]:
    return {
        "custom_id": "x",
        "response": {"status_code": status, "request_id": "r", "body": {"error": error}},
        "error": None,
    }


def test_line_classification() -> None:
    ok = {"custom_id": "x", "response": {"status_code": 200, "body": {}}, "error": None}
    assert line_error(ok) is None
    expired = {
        "custom_id": "x",
        "response": None,
        "error": {"code": "batch_expired", "message": "m"},
    }
    err = line_error(expired)
    assert err == LineError("batch_expired", "m")
    assert not err.retryable
    shape_a = _http_line(
        400,
        {
            "message": "Error while downloading https://h/broken/1.jpg.",
            "type": "invalid_request_error",
            "param": "url",
            "code": "invalid_value",
        },
    )
    shape_b = _http_line(
        400,
        {"message": "Timeout while downloading https://h/t.jpg.", "param": None, "code": None},
    )
    shape_c = _http_line(400, {"message": "bad", "code": "failed_to_download_image"})
    for line in (shape_a, shape_b, shape_c):
        err = line_error(line)
        assert err is not None
        assert err.image_error
        assert not err.retryable
    other = line_error(_http_line(400, {"message": "bad max", "code": "integer_below_min_value"}))
    assert other is not None
    assert not other.image_error
    assert not other.retryable
    assert line_error(_http_line(429, {"message": "slow down", "code": "rate_limit_exceeded"}))
    assert line_error(_http_line(503, {"message": "overloaded", "type": "server_error"})) == (
        LineError("server_error", "overloaded", status_code=503)
    )
    assert LineError("server_error", "x", status_code=503).retryable
    assert LineError("rate_limit_exceeded", "x", status_code=429).retryable


def _req(work_id: int, job: str, *, model: str = "m", text: str = "hello", images: int = 0) -> Any:
    content: list[dict[str, Any]] = [{"type": "input_text", "text": text}]
    content += [{"type": "input_image", "image_url": f"https://i/{n}.jpg"} for n in range(images)]
    return BatchRequest(work_id, job, 1, {"model": model, "input": [{"content": content}]})


def test_pack_one_job_and_one_model_per_file_by_lines_and_bytes() -> None:
    reqs = [_req(i, "a") for i in range(5)] + [_req(10 + i, "b", model="n") for i in range(3)]
    reqs.append(_req(20, "a", model="n"))
    out = pack(reqs, options(max_lines=2), {"m": 10**9, "n": 10**9})
    shape = [(c.job_id, c.model, [r.work_id for r, _ in c.items]) for c in out.chunks]
    assert shape == [
        ("a", "m", [0, 1]),
        ("a", "m", [2, 3]),
        ("a", "m", [4]),
        ("b", "n", [10, 11]),
        ("b", "n", [12]),
        ("a", "n", [20]),
    ]
    line = len(orjson.dumps(_req(0, "a", text="x" * 3000).body)) + LINE_OVERHEAD
    big = [_req(i, "a", text="x" * 3000) for i in range(7)]
    out = pack(big, options(max_bytes=line * 3), {"m": 10**9})
    assert [len(c.items) for c in out.chunks] == [3, 3, 1]
    assert all(c.size <= line * 3 for c in out.chunks)


def test_pack_token_budget_keeps_order_and_rejects_oversized_lines() -> None:
    reqs = [_req(i, "a", images=1) for i in range(10)]
    per = estimate_tokens(orjson.dumps(reqs[0].body), 1_300)
    budget = {"m": per * 4 + per // 2}
    out = pack(reqs, options(), budget)
    assert [r.work_id for r, _ in out.chunks[0].items] == [0, 1, 2, 3]
    assert [r.work_id for r in out.leftover] == [4, 5, 6, 7, 8, 9]
    assert budget["m"] == per // 2
    huge = _req(99, "a", text="y" * 5000)
    out = pack([huge, _req(1, "a")], options(max_bytes=4096), {"m": 10**9})
    assert [(r.work_id, e.code) for r, e in out.rejected] == [(99, "line_too_large")]
    assert [r.work_id for r, _ in out.chunks[0].items] == [1]
    no_model = BatchRequest(5, "a", 1, {"input": "x"})
    assert [e.code for _, e in pack([no_model], options(), {}).rejected] == ["missing_model"]


def test_token_estimate_is_never_below_the_simulators() -> None:
    # the simulator (like OpenAI) counts the uploaded line: bytes / 4 + a high-detail image cost
    body = orjson.dumps(_req(1, "a", text="z" * 777, images=3).body)
    line = b'{"custom_id":"vision-123456-7890123","method":"POST","url":"/v1/responses","body":'
    sim_estimate = len(line + body + b"}") // 4 + 3 * 1_244
    assert estimate_tokens(body, 1_300) >= sim_estimate


@pytest.fixture
async def table_source(pool: asyncpg.Pool) -> AsyncIterator[TableSource]:
    async with pool.acquire() as conn:
        table = await create_table(conn)
        await add_items(conn, table, "job", 3)
    yield TableSource(table)
    await pool.execute(f"DROP TABLE {table}")


@pytest.mark.pg
async def test_retries_are_bounded_by_attempts(
    pool: asyncpg.Pool, table_source: TableSource
) -> None:
    opts = options(max_attempts=3, retry_delays_s=[7.0, 70.0])
    transient = LineError("server_error", "overloaded", status_code=503)
    permanent = LineError("invalid_value", "bad", status_code=400)
    t = table_source.table
    async with pool.acquire() as conn, conn.transaction():
        assert await settle_failure(conn, table_source, opts, 1, 1, transient) == "retried"
        assert await settle_failure(conn, table_source, opts, 2, 3, transient) == "failed"
        assert await settle_failure(conn, table_source, opts, 3, 1, permanent) == "failed"
        rows = await conn.fetch(
            f"""SELECT id, status, last_error,
                       extract(epoch FROM next_attempt_at - now()) AS delay FROM {t} ORDER BY id"""
        )
    assert [(r["status"], r["last_error"]) for r in rows] == [
        ("queued", "server_error"),
        ("failed", "server_error"),
        ("failed", "invalid_value"),
    ]
    assert 6.0 <= float(rows[0]["delay"]) <= 7.5
    assert opts.retry_delay(1) == 7.0
    assert opts.retry_delay(2) == 70.0
    assert opts.retry_delay(9) == 70.0


def _failed_batch(errors: list[dict[str, Any]]) -> Batch:
    return Batch.model_validate(
        {
            "id": "batch_1",
            "object": "batch",
            "endpoint": "/v1/responses",
            "input_file_id": "file-1",
            "completion_window": "24h",
            "status": "failed",
            "created_at": 1,
            "errors": {"object": "list", "data": errors},
        }
    )


@pytest.mark.pg
async def test_failed_batch_rules(pool: asyncpg.Pool, table_source: TableSource) -> None:
    opts = options(token_limit_backoff_s=42.0, max_attempts=3)

    async def settle(batch: Batch, work_id: int, line_no: int, attempt: int) -> Any:
        async with pool.acquire() as conn, conn.transaction():
            item = await conn.fetchrow(
                "SELECT $1::bigint AS work_id, $2::int AS line_no, $3::int AS attempt",
                work_id,
                line_no,
                attempt,
            )
            assert item is not None
            status, err, delay = await FailedBatch(batch).settle(conn, opts, table_source, item)
            return status, err.code if err else None, delay

    limit = _failed_batch(
        [{"code": "token_limit_exceeded", "message": "Enqueued token limit reached", "line": None}]
    )
    assert await settle(limit, 1, 1, 1) == ("released", "token_limit_exceeded", 42.0)
    bad_line = _failed_batch(
        [{"code": "invalid_json_line", "message": "not JSON", "line": 2, "param": None}]
    )
    assert await settle(bad_line, 2, 2, 1) == ("failed", "invalid_json_line", 0.0)
    assert await settle(bad_line, 1, 1, 1) == ("released", None, 0.0)
    whole = _failed_batch([{"code": "empty_file", "message": "The input file is empty."}])
    assert await settle(whole, 3, 1, 1) == ("retried", "empty_file", 0.0)
    assert await settle(whole, 3, 1, 3) == ("failed", "empty_file", 0.0)
    rows = await pool.fetch(f"SELECT id, status, last_error FROM {table_source.table} ORDER BY id")
    assert [(r["status"], r["last_error"]) for r in rows] == [
        ("queued", None),  # released rows are requeued by the monitor, not by settle()
        ("failed", "invalid_json_line"),
        ("failed", "empty_file"),
    ]
