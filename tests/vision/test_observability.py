"""Observability across vision and translate, both running in-process on real Kafka and
PostgreSQL with the OpenAI simulator: every record of a lot (lots.submitted, lots.assessed,
lots.translated, read raw from Kafka) carries the lot's trace id in its ``traceparent`` header,
and both stages' /metrics show their named families."""

from __future__ import annotations

import asyncio
import collections
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from gen_common import kafka, tracing
from gen_common.events import LOTS_ASSESSED, LOTS_SUBMITTED, LOTS_TRANSLATED, key_of
from gen_translate import main as translate_main
from gen_translate.settings import TranslateOptions, TranslateSettings
from gen_vision import main as vision_main
from gen_vision.settings import VisionSettings
from openai_sim.process import RunningSim, free_port

from tests.harness.processes import eventually

from .conftest import ImageHost, openai_settings, vision_options
from .lots import lot

pytestmark = [pytest.mark.pg, pytest.mark.kafka]
TOPICS = (LOTS_SUBMITTED, LOTS_ASSESSED, LOTS_TRANSLATED)
VISION_FAMILIES = [
    'gen_consumer_lag{group="vision",partition="0",topic="lots.submitted"}',
    'gen_consumer_committed_offset{group="vision",partition="0",topic="jobs.control"}',
    'gen_queue_depth{queue="vision_work",state="queued"}',
    'gen_queue_depth{queue="vision_work",state="running"}',
    'gen_breaker_state{stage="vision"}',
    'gen_breaker_trips_total{stage="vision"}',
    'gen_model_calls_total{outcome="ok",stage="vision"}',
    'gen_model_calls_in_flight{stage="vision"}',
    'gen_model_tokens_total{kind="input",stage="vision"}',
    'gen_model_cost_usd_total{stage="vision"}',
]
TRANSLATE_FAMILIES = [
    'gen_consumer_lag{group="translate",partition="0",topic="lots.assessed"}',
    'gen_queue_depth{queue="translate_work",state="queued"}',
    'gen_breaker_state{stage="translate"}',
    'gen_breaker_rejected_total{stage="translate"}',
    'gen_model_calls_total{outcome="translated",stage="translate"}',
    'gen_model_tokens_total{kind="output",stage="translate"}',
    'gen_model_cost_usd_total{stage="translate"}',
]


def samples(text: str) -> dict[str, float]:
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


async def scrape(port: int) -> dict[str, float]:
    async with httpx.AsyncClient() as http:
        return samples((await http.get(f"http://127.0.0.1:{port}/metrics", timeout=10)).text)


async def test_a_lots_records_share_its_trace_and_both_stages_show_metrics(
    pool: asyncpg.Pool,
    sim: RunningSim,
    image_host: ImageHost,
    make_settings: Callable[..., Any],
) -> None:
    vport, tport = free_port(), free_port()
    vision: VisionSettings = make_settings(
        VisionSettings,
        openai=openai_settings(sim),
        vision=vision_options(workers=2, metrics_port=vport),
    )
    translate: TranslateSettings = make_settings(
        TranslateSettings,
        openai=openai_settings(sim),
        translate=TranslateOptions(workers=2, idle_poll_s=0.2, metrics_port=tport),
    )
    await kafka.ensure_topics(vision.kafka)
    job = uuid.uuid4()
    events = [lot(job, i, [image_host.url(f"img/{job}/{i}.jpg")], total=3) for i in range(3)]
    traces = {e.lot_seq: tracing.new() for e in events}
    seen: dict[tuple[str, int], list[str]] = collections.defaultdict(list)
    raw = AIOKafkaConsumer(
        *(vision.kafka.topic(t) for t in TOPICS),
        bootstrap_servers=vision.kafka.bootstrap_servers,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await raw.start()
    services = [
        asyncio.create_task(vision_main.run(vision)),
        asyncio.create_task(translate_main.run(translate)),
    ]
    try:
        async with kafka.open_publisher(vision.kafka) as publisher:
            for e in events:
                await publisher.publish_raw(
                    LOTS_SUBMITTED, key_of(e), kafka.encode(e), traceparent=traces[e.lot_seq]
                )

        async def every_lot_translated() -> bool:
            assert not any(s.done() for s in services), services
            for records in (await raw.getmany(timeout_ms=200)).values():
                for r in records:
                    topic = r.topic.removeprefix(vision.kafka.topic_prefix)
                    owner, _, seq = (r.key or b"").decode().partition(":")
                    if owner == str(job):  # the shared outbox may hold other tests' rows
                        seen[(topic, int(seq))].append(tracing.from_headers(r.headers) or "")
            return all((LOTS_TRANSLATED, seq) in seen for seq in traces)

        await eventually(every_lot_translated, timeout=90)
        await eventually(lambda: _caught_up(vport, "vision"), timeout=30)
        await eventually(lambda: _caught_up(tport, "translate"), timeout=30)
        vision_metrics, translate_metrics = await scrape(vport), await scrape(tport)
    finally:
        for s in services:
            s.cancel()
        await asyncio.gather(*services, return_exceptions=True)
        await raw.stop()

    for seq, given in traces.items():
        headers = [h for topic in TOPICS for h in seen[(topic, seq)]]
        assert len(headers) == 3, seen
        assert {tracing.trace_id(h) for h in headers} == {tracing.trace_id(given)}, seq
        assert len(set(headers)) == 3, "each hop is a new span of the lot's trace"

    assert [f for f in VISION_FAMILIES if f not in vision_metrics] == [], vision_metrics
    assert [f for f in TRANSLATE_FAMILIES if f not in translate_metrics] == []
    assert vision_metrics['gen_model_tokens_total{kind="input",stage="vision"}'] > 0
    assert translate_metrics['gen_model_cost_usd_total{stage="translate"}'] > 0


async def _caught_up(port: int, group: str) -> bool:
    try:
        found = await scrape(port)
    except httpx.TransportError:
        return False
    lag = {k: v for k, v in found.items() if k.startswith(f'gen_consumer_lag{{group="{group}"')}
    return bool(lag) and sum(lag.values()) == 0
