"""The vision service's composition root: ``python -m gen_vision``.

Runs the lots.submitted / jobs.control consumer (group "vision"), N realtime workers, the lease
reaper, the NOTIFY listener that wakes idle workers, the outbox relay and, when
``VISION__BATCH_MIN_LOTS`` is set, the Batch API engine for larger batch-mode jobs. At start it
creates missing topics and checks the configured model against ``GET /v1/models`` (a shutdown
date is a warning; an already shut-down model refuses the start unless
``VISION__REFUSE_RETIRED_MODELS`` is false).
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from functools import partial

import httpx
from gen_common import db, kafka, llm, model_check, openai_batch, outbox, ratelimits, service
from gen_common.breaker import Breaker
from gen_common.events import JOBS_CONTROL, LOTS_SUBMITTED, JobCancelRequested, LotSubmitted
from gen_common.kafka import Subscription
from gen_common.outbox_handoff import Handoff
from gen_common.safe_http import SafeClient
from gen_common.wakeup import Wakeup

from gen_vision import assess, batch_path, handler, metrics, worker
from gen_vision.images import ImageChecker
from gen_vision.settings import VisionSettings


def main() -> None:
    settings = VisionSettings()
    service.run(run(settings), settings.log, name="vision")


async def run(settings: VisionSettings, *, started: asyncio.Event | None = None) -> None:
    o = settings.vision
    async with AsyncExitStack() as stack:
        pool = await stack.enter_async_context(db.open_pool(settings.db))
        await kafka.ensure_topics(settings.kafka)
        client = llm.client(settings.openai)
        stack.push_async_callback(client.close)
        await model_check.check_models(client, [o.model], refuse_retired=o.refuse_retired_models)
        keep = o.images.concurrency  # keep-alive for every concurrent check: no reconnect churn
        images = await stack.enter_async_context(
            SafeClient(
                o.images.ssrf,
                timeout=o.images.get_timeout_s,
                limits=httpx.Limits(max_connections=keep, max_keepalive_connections=keep),
            )
        )
        publisher = await stack.enter_async_context(kafka.open_publisher(settings.kafka))
        breaker = Breaker(o.breaker, name="openai-vision")
        assessor = assess.OpenAIAssessor(
            client,
            breaker=breaker,
            throttle=ratelimits.Throttle(o.throttle),
            options=o,
            prompt=assess.load_prompt(o.prompt),
        )
        handoff = Handoff(pool, publisher)  # LotAssessed published right after its commit
        deps = worker.Deps(
            pool=pool,
            assessor=assessor,
            checker=ImageChecker(images, o.images),
            breaker=breaker,
            options=o,
            wakeup=Wakeup(),
            simulated=settings.openai.simulated,
            handoff=handoff,
        )
        claimer = worker.claimer_of(deps)
        batch = o.batch_min_lots is not None
        on_cancel = batch_path.on_cancel if batch else handler.on_cancel
        subscriptions = [
            Subscription(
                LOTS_SUBMITTED,
                LotSubmitted,
                partial(handler.on_submitted, options=o),
                many=partial(handler.on_submitted_many, options=o, claimer=claimer),
                atomic=handler.submitted_in_one_statement,
            ),
            Subscription(JOBS_CONTROL, JobCancelRequested, on_cancel),
        ]
        async with asyncio.TaskGroup() as tg:
            tg.create_task(
                kafka.consume(
                    settings.kafka, pool=pool, group="vision", subscriptions=subscriptions
                )
            )
            tg.create_task(outbox.relay(pool, publisher))
            tg.create_task(handoff.run())
            tg.create_task(worker.reaper(pool, o))
            tg.create_task(worker.listen(pool, deps.wakeup))
            tg.create_task(worker.run(deps, claimer))
            if batch:  # large batch-mode jobs: the Batch API engine (gen_vision.batch_path)
                source = batch_path.VisionBatchSource(
                    pool, checker=deps.checker, assessor=assessor, options=o
                )
                tg.create_task(openai_batch.run(pool, client, source, o.batch))
            tg.create_task(metrics.serve(settings, pool=pool, breaker=breaker))
            if started is not None:
                started.set()
