"""Composition root: the consumer, the sender (with reaper and breaker sampler) and the HTTP app
(``/metrics`` includes the consumer group's lag, read from Kafka at scrape time).

The notifier writes no outbox rows, so it runs no outbox relay.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial

from fastapi import FastAPI
from gen_common import db, http_server, job_usage, kafka, service
from gen_common.events import (
    JOBS_CONTROL,
    LOTS_FAILED,
    LOTS_TRANSLATED,
    JobCancelRequested,
    LotFailed,
    LotTranslated,
)
from gen_common.kafka import Subscription
from gen_common.metrics import consumer_lag
from gen_common.ssrf import Resolver

from gen_notifier import handler
from gen_notifier.deliver import registration_check
from gen_notifier.http1 import PinnedClient
from gen_notifier.metrics import Metrics
from gen_notifier.routes import create_app
from gen_notifier.schedule import Clock, SystemClock
from gen_notifier.settings import NotifierSettings
from gen_notifier.worker import Sender

GROUP = "notifier"


async def serve_http(app: FastAPI, host: str, port: int) -> None:
    await http_server.serve(app, host=host, port=port, lifespan="off")


@asynccontextmanager
async def open_client(
    settings: NotifierSettings, resolver: Resolver | None
) -> AsyncIterator[PinnedClient]:
    o = settings.notifier
    client = PinnedClient(
        o.ssrf, resolver=resolver, connect_timeout_s=o.connect_timeout_s, max_idle=o.workers
    )
    try:
        yield client
    finally:
        await client.aclose()


async def run(
    settings: NotifierSettings, *, clock: Clock | None = None, resolver: Resolver | None = None
) -> None:
    o = settings.notifier
    clock = clock or SystemClock()
    metrics = Metrics()
    async with AsyncExitStack() as stack:
        pool = await stack.enter_async_context(db.open_pool(settings.db))
        client = await stack.enter_async_context(open_client(settings, resolver))
        deps = handler.Deps(
            shared_key=o.shared_key.get_secret_value(),
            chunk_size=o.chunk_size,
            base_url=o.public_base_url.rstrip("/"),
            clock=clock,
            refuse=registration_check(
                o.ssrf, timeout_s=o.register_resolve_timeout_s, resolver=resolver
            ),
        )
        subscriptions = [
            Subscription(LOTS_TRANSLATED, LotTranslated, partial(handler.on_translated, deps=deps)),
            Subscription(LOTS_FAILED, LotFailed, partial(handler.on_failed, deps=deps)),
            Subscription(JOBS_CONTROL, JobCancelRequested, partial(handler.on_cancel, deps=deps)),
        ]
        sender = Sender(pool, client, o, clock, metrics)
        metrics.watch(pool)
        topics = [LOTS_TRANSLATED, LOTS_FAILED, JOBS_CONTROL]
        probe = await stack.enter_async_context(
            kafka.open_lag_probe(settings.kafka, group=GROUP, topics=topics)
        )
        metrics.add_source("consumer_lag", consumer_lag(probe))
        app = create_app(settings, pool=pool, metrics=metrics, clock=clock)
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(
                kafka.consume(settings.kafka, pool=pool, group=GROUP, subscriptions=subscriptions)
            )
            tasks.create_task(sender.run())
            tasks.create_task(sender.reap_loop())
            tasks.create_task(sender.breaker_loop())
            tasks.create_task(job_usage.keep_folding(pool))  # usage rows -> the jobs' totals
            tasks.create_task(serve_http(app, o.http_host, o.http_port))


def main() -> None:
    settings = NotifierSettings()
    service.run(run(settings), settings.log, name="notifier")
