"""Composition root of the translate stage.

Runs the consumer (lots.assessed, jobs.control), N workers, the lease reaper and the outbox
relay, all on one pool; topics are ensured at start. With ``TRANSLATE__BATCH_MIN_LOTS`` set, the
work rows of batch-mode jobs above that size go to the Batch API engine instead of the workers.
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
from contextlib import AsyncExitStack

from gen_common import db, kafka, llm, openai_batch, outbox, ratelimits, service
from gen_common.breaker import Breaker
from gen_common.events import JOBS_CONTROL, LOTS_ASSESSED, JobCancelRequested, LotAssessed
from gen_common.outbox_handoff import Handoff
from gen_common.wakeup import Wakeup

from gen_translate import batch_path, handler, metrics, worker
from gen_translate.describe import OpenAIDescriber
from gen_translate.settings import TranslateSettings

GROUP = "translate"


async def run(settings: TranslateSettings) -> None:
    opts = settings.translate
    await kafka.ensure_topics(settings.kafka)
    async with AsyncExitStack() as stack:
        pool = await stack.enter_async_context(db.open_pool(settings.db))
        publisher = await stack.enter_async_context(kafka.open_publisher(settings.kafka))
        client = llm.client(settings.openai)
        stack.push_async_callback(client.close)
        wake = Wakeup()
        listener = await pool.acquire()
        stack.push_async_callback(pool.release, listener)
        await listener.add_listener(handler.WAKE_CHANNEL, wake.notify)
        stack.push_async_callback(listener.remove_listener, handler.WAKE_CHANNEL, wake.notify)
        batch_lots = opts.batch_min_lots
        breaker = Breaker(settings.breaker)
        handoff = Handoff(pool, publisher)  # LotTranslated published right after its commit
        deps = worker.WorkerDeps(
            pool=pool,
            describer=OpenAIDescriber(client, opts, ratelimits.Throttle(opts.throttle)),
            options=opts,
            breaker=breaker,
            wake=wake,
            owner=f"{socket.gethostname()}-{os.getpid()}",
            claim_where="TRUE" if batch_lots is None else batch_path.realtime_where(batch_lots),
            handoff=handoff,
        )
        claimer = worker.claimer_of(deps)
        handler_deps = handler.Deps(
            sync_budget_s=opts.sync_budget_s,
            workers=handler.Workers(claimer, breaker, opts.lease_s),
        )
        subscriptions = [
            kafka.Subscription(
                LOTS_ASSESSED,
                LotAssessed,
                functools.partial(handler.on_assessed, deps=handler_deps),
                many=functools.partial(handler.on_assessed_many, deps=handler_deps),
                atomic=handler.assessed_in_one_statement,
            ),
            kafka.Subscription(
                JOBS_CONTROL,
                JobCancelRequested,
                handler.on_control if batch_lots is None else batch_path.on_control,
            ),
        ]
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(
                kafka.consume(settings.kafka, pool=pool, group=GROUP, subscriptions=subscriptions)
            )
            tasks.create_task(outbox.relay(pool, publisher))
            tasks.create_task(handoff.run())
            tasks.create_task(worker.run_reaper(pool, opts.reap_interval_s))
            tasks.create_task(worker.run_workers(deps, claimer))
            tasks.create_task(metrics.serve(settings, pool=pool, breaker=breaker))
            if batch_lots is not None:
                source = batch_path.TranslateBatchSource(pool, options=opts, min_lots=batch_lots)
                tasks.create_task(openai_batch.run(pool, client, source, opts.batch))


def main() -> None:
    settings = TranslateSettings()
    service.run(run(settings), settings.log, name="translate")
