"""Ingest starts a lot's trace: every lots.submitted record of a request carries its
``traceparent`` (the request's own when it sends one, else one new trace per request)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from gen_common import tracing
from gen_common.events import LOTS_SUBMITTED

from tests.ingest.conftest import Ingest

pytestmark = [pytest.mark.pg, pytest.mark.kafka]


def job(n: int) -> dict[str, Any]:
    lots = [
        {"lot_id": f"T-{i}", "images": [f"https://img.example/{uuid.uuid4()}.jpg"]}
        for i in range(n)
    ]
    return {"lots": lots, "languages": ["en", "de"]}


async def headers_by_job(ingest: Ingest, count: int) -> dict[str, list[str | None]]:
    """The traceparent header of the first ``count`` lots.submitted records, by job id."""
    consumer = AIOKafkaConsumer(
        ingest.kafka.topic(LOTS_SUBMITTED),
        bootstrap_servers=ingest.kafka.bootstrap_servers,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    found: dict[str, list[str | None]] = {}
    try:
        async with asyncio.timeout(30):
            while sum(map(len, found.values())) < count:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    for r in records:
                        job_id = (r.key or b"").decode().split(":")[0]
                        found.setdefault(job_id, []).append(tracing.from_headers(r.headers))
    finally:
        await consumer.stop()
    return found


async def test_lots_carry_the_requests_trace_or_a_new_one(ingest: Ingest) -> None:
    given = tracing.new()
    with_header = await ingest.v2(job(3), headers={"traceparent": given})
    assert with_header.status_code == 201, with_header.text
    without = await ingest.v2(job(2))
    assert without.status_code == 201, without.text
    found = await headers_by_job(ingest, 5)

    traced = found[with_header.json()["job_id"]]
    assert len(traced) == 3
    assert {tracing.trace_id(h) for h in traced} == {tracing.trace_id(given)}
    assert given not in traced, "records are child spans of the request"
    fresh = found[without.json()["job_id"]]
    assert len(fresh) == 2
    assert all(tracing.valid(h) for h in fresh)
    assert len({tracing.trace_id(h) for h in fresh}) == 1, "one trace per request"
    assert tracing.trace_id(fresh[0]) != tracing.trace_id(given)
