"""Ingest fixtures: the app with its real lifespan (PostgreSQL, Kafka, reply tail) behind an
httpx ASGI client, signed-request helpers, and a reader of what landed on ``lots.submitted``."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from fastapi import FastAPI
from gen_common import kafka, request_auth
from gen_common.events import LOTS_SUBMITTED, Event, LotSubmitted
from gen_common.settings import KafkaSettings
from gen_common.signing import sign_lots
from gen_ingest.app import create_app
from gen_ingest.settings import IngestOptions, IngestSettings

KEY = "test-key"
BASE = "http://ingest.test"


@dataclass
class Ingest:
    app: FastAPI
    client: httpx.AsyncClient
    settings: IngestSettings
    kafka: KafkaSettings
    client_id: str
    key_id: str
    secret: bytes

    async def v1(
        self, body: Any, *, raw: bytes | None = None, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        content = raw if raw is not None else orjson.dumps(body)
        all_headers = {"Content-Type": "application/json"} | (headers or {})
        return await self.client.post(
            "/api/v1/generate-descriptions", content=content, headers=all_headers
        )

    def signed(self, body: bytes, *, path: str = "/api/v2/jobs", **kw: Any) -> dict[str, str]:
        return request_auth.sign(
            self.secret,
            client_id=self.client_id,
            key_id=self.key_id,
            method="POST",
            path=path,
            body=body,
            **kw,
        )

    async def v2(self, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
        content = orjson.dumps(body)
        all_headers = {"Content-Type": "application/json"} | self.signed(content) | (headers or {})
        return await self.client.post("/api/v2/jobs", content=content, headers=all_headers)


def request_v1(lots: list[Any], languages: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "signature": sign_lots(KEY.encode(), lots),
        "version": "1.0.0",
        "languages": languages or ["en", "ru"],
        "lots": lots,
        **extra,
    }


def lot(n: int = 0, images: int = 2, info: str | None = None) -> dict[str, Any]:
    """A lot; its additional_info is unique unless given (byte-identical bodies are repeats)."""
    return {
        "lot_id": f"L-{n}",
        "additional_info": info if info is not None else f"front bumper {uuid.uuid4()}",
        "images": [{"url": f"https://img.example/{n}/{i}.jpg"} for i in range(images)],
    }


MakeIngest = Callable[..., Any]


@pytest.fixture
async def make_ingest(
    make_settings: Callable[..., Any],
    pool: asyncpg.Pool,
    unique: str,
    kafka_settings: KafkaSettings,
) -> AsyncIterator[Callable[..., Any]]:
    """Start apps with options overridden; all are stopped at teardown."""
    stack: list[tuple[FastAPI, Any, httpx.AsyncClient]] = []
    async with pool.acquire() as conn:
        client_id = f"client-{unique}"
        await request_auth.create_client(conn, client_id, rate_per_s=10_000, rate_burst=10_000)
        key_id, secret = await request_auth.create_key(conn, client_id)

    async def build(kafka: dict[str, Any] | None = None, **options: Any) -> Ingest:
        values: dict[str, Any] = {
            "shared_key": KEY,
            "v1_rate_per_s": 10_000,
            "v1_rate_burst": 10_000,
        } | options
        overrides: dict[str, Any] = {"ingest": IngestOptions(**values)}
        if kafka:
            overrides["kafka"] = kafka_settings.model_copy(update=kafka)
        settings: IngestSettings = make_settings(IngestSettings, **overrides)
        app = create_app(settings)
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)
        stack.append((app, lifespan, client))
        return Ingest(app, client, settings, settings.kafka, client_id, key_id, secret)

    yield build
    for _app, lifespan, client in reversed(stack):
        await client.aclose()
        await lifespan.__aexit__(None, None, None)


@pytest.fixture
async def ingest(make_ingest: Callable[..., Any]) -> Ingest:
    result: Ingest = await make_ingest()
    return result


async def submitted(
    settings: KafkaSettings, count: int, *, timeout: float = 30.0
) -> list[LotSubmitted]:
    """Read ``count`` events from the start of this test's lots.submitted topic."""
    consumer = AIOKafkaConsumer(
        settings.topic(LOTS_SUBMITTED),
        bootstrap_servers=settings.bootstrap_servers,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    found: list[LotSubmitted] = []
    try:
        async with asyncio.timeout(timeout):
            while len(found) < count:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    found.extend(LotSubmitted.model_validate_json(r.value) for r in records)
    finally:
        await consumer.stop()
    return found


async def topic_count(settings: KafkaSettings, topic: str = LOTS_SUBMITTED) -> int:
    """How many records the topic holds (sum of end offsets)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(settings.topic(topic), p) for p in range(settings.partitions)]
        return sum((await consumer.end_offsets(tps)).values())
    finally:
        await consumer.stop()


async def publish(settings: KafkaSettings, event: Event) -> None:
    async with kafka.open_publisher(settings) as publisher:
        await publisher.publish(event)


Answer = Callable[[LotSubmitted], Event | None]


@dataclass
class Pipeline:
    """Stands in for vision+translate on the real broker: answers each submitted lot with
    whatever ``answer`` returns (a LotTranslated / LotFailed, or None for no answer)."""

    answer: Answer
    seen: list[LotSubmitted]


@pytest.fixture
async def pipeline(kafka_settings: KafkaSettings) -> AsyncIterator[Pipeline]:
    stub = Pipeline(answer=lambda e: None, seen=[])
    consumer = AIOKafkaConsumer(
        kafka_settings.topic(LOTS_SUBMITTED),
        bootstrap_servers=kafka_settings.bootstrap_servers,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await kafka.ensure_topics(kafka_settings)
    await consumer.start()

    async def loop(publisher: kafka.Publisher) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    event = LotSubmitted.model_validate_json(record.value)
                    stub.seen.append(event)
                    reply = stub.answer(event)
                    if reply is not None:
                        await publisher.publish(reply)

    async with kafka.open_publisher(kafka_settings) as publisher:
        task = asyncio.create_task(loop(publisher))
        try:
            yield stub
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await consumer.stop()
