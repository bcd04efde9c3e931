"""The vision service end to end over real Kafka: LotSubmitted in, LotAssessed out, rows stored.

``run()`` runs in-process here (consumer, workers, reaper, relay); test_sigkill.py runs it as a
process and kills it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest
from gen_common import kafka
from gen_common.errors import PermanentError
from gen_common.events import LOTS_ASSESSED, LOTS_FAILED, Event, LotAssessed, LotFailed
from gen_vision import main
from gen_vision.settings import VisionSettings
from openai_sim.process import RunningSim

from tests.harness.processes import eventually

from .conftest import ImageHost, openai_settings, vision_options
from .lots import lot, observe

pytestmark = [
    pytest.mark.pg,
    pytest.mark.kafka,
]


async def test_submitted_lots_come_out_assessed_and_stored(
    pool: asyncpg.Pool,
    sim: RunningSim,
    image_host: ImageHost,
    make_settings: Callable[..., Any],
) -> None:
    settings: VisionSettings = make_settings(
        VisionSettings, openai=openai_settings(sim), vision=vision_options(workers=4)
    )
    await kafka.ensure_topics(settings.kafka)
    topics: dict[str, type[Event]] = {LOTS_ASSESSED: LotAssessed, LOTS_FAILED: LotFailed}
    job = uuid.uuid4()
    good = [image_host.url(f"img/{job}/{i}.jpg") for i in range(3)]
    events = [lot(job, i, good, total=10) for i in range(9)]
    events.append(lot(job, 9, [image_host.url("missing/a.jpg")], total=10))
    service = asyncio.create_task(main.run(settings))

    def mine(events: list[Event]) -> list[Event]:  # the shared outbox may hold other tests' rows
        return [e for e in events if getattr(e, "job_id", None) == job]

    try:
        async with observe(settings.kafka, pool, topics) as seen:
            async with kafka.open_publisher(settings.kafka) as publisher:
                await publisher.publish_many(events)
                await publisher.publish_many(events[:3])  # a duplicate delivery is absorbed

            async def all_seen() -> bool:
                assert not service.done(), service
                return (
                    len({e.lot_key for e in mine(seen) if isinstance(e, LotAssessed | LotFailed)})
                    >= 10
                )

            await eventually(all_seen, timeout=60, interval=0.1)
    finally:
        service.cancel()
        await asyncio.gather(service, return_exceptions=True)

    assessed = [e for e in mine(seen) if isinstance(e, LotAssessed)]
    failed = [e for e in mine(seen) if isinstance(e, LotFailed)]
    assert sorted(e.lot_seq for e in assessed) == list(range(9))
    assert [(e.lot_seq, e.reason) for e in failed] == [(9, "image_unreachable")]
    assert await pool.fetchval("SELECT count(*) FROM vision_results WHERE job_id = $1", job) == 9
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM lots WHERE job_id = $1 AND status = 'assessed'", job
        )
        == 9
    )
    assert await pool.fetchval("SELECT status FROM jobs WHERE job_id = $1", job) == "processing"
    calls = [c for c in sim.admin.calls() if (c["metadata"] or {}).get("job_id") == str(job)]
    assert len(calls) == 9
    assert all(c["image_urls"] == good for c in calls)


async def test_refuses_to_start_with_a_shut_down_model(
    sim: RunningSim, make_settings: Callable[..., Any]
) -> None:
    settings: VisionSettings = make_settings(
        VisionSettings, openai=openai_settings(sim), vision=vision_options(model="o4-mini")
    )
    with pytest.raises(PermanentError, match="o4-mini"):
        await asyncio.wait_for(main.run(settings), 30)
