"""The Batch API lifecycle on the simulated clock."""

from __future__ import annotations

import json

import openai
import pytest
from openai import OpenAI
from openai.types.responses import Response
from openai_sim.process import RunningSim

from .batch_files import line, read_lines, start


def test_lifecycle_completed_with_mixed_results(client: OpenAI, sim: RunningSim) -> None:
    lines = [line(f"lot-{i}", images=[f"https://img/{i}/1.jpg"]) for i in range(20)]
    lines.append(line("lot-broken", images=["https://img/broken/1.jpg"]))
    batch = start(client, lines)
    assert batch.status == "validating"
    sim.admin.clock(advance=5)
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "in_progress"
    assert batch.model == "gpt-6-luna"
    sim.admin.clock(advance=0.2)  # 50 lines per sim-second: about 10 lines done
    partial = client.batches.retrieve(batch.id)
    assert partial.request_counts is not None
    assert 0 < partial.request_counts.completed + partial.request_counts.failed < 21
    sim.admin.clock(advance=2)
    assert client.batches.retrieve(batch.id).status == "finalizing"
    sim.admin.clock(advance=10)
    done = client.batches.retrieve(batch.id)
    assert done.status == "completed"
    assert done.completed_at is not None
    assert done.request_counts is not None
    assert (
        done.request_counts.total,
        done.request_counts.completed,
        done.request_counts.failed,
    ) == (21, 20, 1)
    assert done.usage is not None
    assert done.usage.input_tokens > 0
    out = read_lines(client, done.output_file_id)
    assert sorted(o["custom_id"] for o in out) == sorted(f"lot-{i}" for i in range(20))
    for row in out:
        assert row["error"] is None
        assert row["response"]["status_code"] == 200
        body = Response.model_validate(row["response"]["body"])
        assert body.status == "completed"
    (err,) = read_lines(client, done.error_file_id)
    assert err["custom_id"] == "lot-broken"
    assert err["response"]["status_code"] == 400
    assert "Error while downloading" in err["response"]["body"]["error"]["message"]


def test_all_failed_batch_has_no_output_file(client: OpenAI, sim: RunningSim) -> None:
    batch = start(
        client,
        [line(f"x{i}", model="gpt-6-luna", images=["https://b/broken/1.jpg"]) for i in range(3)],
    )
    sim.admin.clock(advance=100)
    done = client.batches.retrieve(batch.id)
    assert done.status == "completed"
    assert done.output_file_id is None
    assert done.request_counts is not None
    assert done.request_counts.failed == 3
    assert len(read_lines(client, done.error_file_id)) == 3


@pytest.mark.parametrize(
    ("payload", "code", "line_no"),
    [
        (
            b'{"custom_id": "a", "method": "POST", "url": "/v1/responses", "body": {}}\nnot json\n',
            "invalid_json_line",
            2,
        ),
        (json.dumps(line("a")) + "\n" + json.dumps(line("a")), "duplicate_custom_id", 2),
        (
            json.dumps(line("a")) + "\n" + json.dumps(line("b", url="/v1/chat/completions")),
            "url_mismatch",
            2,
        ),
        (
            json.dumps(line("a")) + "\n" + json.dumps(line("b", model="gpt-5.4-mini")),
            "model_mismatch",
            2,
        ),
        (b"\n", "empty_file", None),
    ],
)
def test_validation_failures(
    client: OpenAI, sim: RunningSim, payload: bytes | str, code: str, line_no: int | None
) -> None:
    data = payload.encode() if isinstance(payload, str) else payload
    batch = start(client, data)
    sim.admin.clock(advance=6)
    failed = client.batches.retrieve(batch.id)
    assert failed.status == "failed"
    assert failed.failed_at is not None
    assert failed.errors is not None
    assert failed.errors.data is not None
    assert failed.errors.data[0].code == code
    assert failed.errors.data[0].line == line_no


def test_too_many_tasks(client: OpenAI, sim: RunningSim) -> None:
    sim.admin.config({"batch": {"max_tasks": 3}})
    batch = start(client, [line(f"t{i}") for i in range(4)])
    sim.admin.clock(advance=6)
    failed = client.batches.retrieve(batch.id)
    assert failed.errors is not None
    assert failed.errors.data is not None
    assert failed.errors.data[0].code == "too_many_tasks"


def test_token_limit_exceeded(client: OpenAI, sim: RunningSim) -> None:
    sim.admin.config({"batch": {"enqueued_token_limits": {"gpt-6-luna": 8000}}})
    first = start(client, [line(f"a{i}", images=["https://i/1.jpg"]) for i in range(4)])
    second = start(client, [line(f"b{i}", images=["https://i/1.jpg"]) for i in range(4)])
    sim.admin.clock(advance=5.05)
    assert client.batches.retrieve(first.id).status == "in_progress"
    failed = client.batches.retrieve(second.id)
    assert failed.status == "failed"
    assert failed.errors is not None
    assert failed.errors.data is not None
    error = failed.errors.data[0]
    assert error.code == "token_limit_exceeded"
    assert error.line is None
    assert "Enqueued token limit reached for gpt-6-luna" in (error.message or "")


def test_cancel_gives_partial_output(client: OpenAI, sim: RunningSim) -> None:
    batch = start(client, [line(f"c{i}") for i in range(100)])
    sim.admin.clock(advance=5.5)  # ~25 lines done
    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status == "cancelling"
    assert cancelling.cancelling_at is not None
    sim.admin.clock(advance=10)
    cancelled = client.batches.retrieve(batch.id)
    assert cancelled.status == "cancelled"
    out = read_lines(client, cancelled.output_file_id)
    err = read_lines(client, cancelled.error_file_id)
    assert 0 < len(out) < 100
    assert len(out) + len(err) == 100
    assert {e["error"]["code"] for e in err} == {"batch_cancelled"}
    with pytest.raises(openai.BadRequestError):
        client.batches.cancel(batch.id)


def test_expired_after_24h(client: OpenAI, sim: RunningSim) -> None:
    sim.admin.config({"batch": {"lines_per_sim_second": 0.0001}})
    batch = start(client, [line(f"e{i}") for i in range(10)])
    sim.admin.clock(advance=86_400 + 60)
    expired = client.batches.retrieve(batch.id)
    assert expired.status == "expired"
    assert expired.expired_at is not None
    err = read_lines(client, expired.error_file_id)
    out = read_lines(client, expired.output_file_id)
    assert len(out) + len(err) == 10
    assert err[0]["response"] is None
    assert err[0]["error"]["code"] == "batch_expired"


def test_list_is_cursor_paged(client: OpenAI) -> None:
    ids = [start(client, [line("a")]).id for _ in range(3)]
    page = client.batches.list(limit=2)
    assert [b.id for b in page.data] == ids[::-1][:2]
    assert page.has_more is True
    rest = client.batches.list(limit=2, after=page.data[-1].id)
    assert [b.id for b in rest.data] == [ids[0]]
    assert [b.id for b in client.batches.list(limit=2)] == ids[::-1]  # auto-pagination


def test_input_file_too_large(client: OpenAI, sim: RunningSim) -> None:
    sim.admin.config({"batch": {"max_file_bytes": 100}})
    batch = start(client, [line("a"), line("b")])
    sim.admin.clock(advance=6)
    failed = client.batches.retrieve(batch.id)
    assert failed.status == "failed"
    assert failed.errors is not None
    assert failed.errors.data is not None
    assert failed.errors.data[0].code == "file_too_large"
