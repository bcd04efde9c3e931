"""A 50,000-line batch goes through the whole lifecycle on the simulated clock."""

from __future__ import annotations

import json
import time

from openai import OpenAI
from openai_sim.process import RunningSim

from .batch_files import start

LINES = 50_000


def test_fifty_thousand_lines(client: OpenAI, sim: RunningSim) -> None:
    sim.admin.config({"batch": {"lines_per_sim_second": 100.0}})
    rows = []
    for i in range(LINES):
        body = {"model": "gpt-5.4-mini", "input": f"lot {i}", "max_output_tokens": 64}
        rows.append(
            {"custom_id": f"lot-{i}", "method": "POST", "url": "/v1/responses", "body": body}
        )
    started = time.monotonic()
    batch = start(client, "\n".join(map(json.dumps, rows)).encode())
    sim.admin.clock(advance=5)
    assert client.batches.retrieve(batch.id).status == "in_progress"
    sim.admin.clock(advance=100)  # about 10,000 lines at 100 lines per sim-second
    partial = client.batches.retrieve(batch.id)
    assert partial.status == "in_progress"
    assert partial.request_counts is not None
    assert 9_000 < partial.request_counts.completed < 12_000
    sim.admin.clock(advance=400)
    sim.admin.clock(advance=10)
    done = client.batches.retrieve(batch.id)
    assert done.status == "completed"
    assert done.request_counts is not None
    assert done.request_counts.completed == LINES
    assert done.error_file_id is None
    assert done.output_file_id is not None
    seen = set()
    with client.files.with_streaming_response.content(done.output_file_id) as stream:
        for raw in stream.iter_lines():
            row = json.loads(raw)
            assert row["response"]["status_code"] == 200
            assert row["response"]["body"]["status"] == "completed"
            seen.add(row["custom_id"])
    assert len(seen) == LINES
    assert time.monotonic() - started < 60
