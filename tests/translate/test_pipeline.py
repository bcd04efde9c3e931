"""translate through real Kafka and PostgreSQL: in-process, and as a SIGKILLed process."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from gen_common import kafka
from gen_common.events import LOTS_TRANSLATED, Event, LotTranslated
from gen_common.settings import KafkaSettings, OpenAISettings
from gen_translate import main
from gen_translate.settings import TranslateOptions, TranslateSettings
from openai_sim.process import RunningSim
from pydantic import SecretStr

from tests.harness.processes import child, eventually, settings_env

from .conftest import DESCRIPTION_EN, assessed, create_job

pytestmark = [pytest.mark.pg, pytest.mark.kafka]
LANGUAGES = ["en", "ru", "de", "ru"]


@contextlib.asynccontextmanager
async def translated_events(settings: KafkaSettings) -> AsyncIterator[list[LotTranslated]]:
    """Collect lots.translated from now on (group-less tail, started before anything is sent)."""
    seen: list[LotTranslated] = []
    started = asyncio.Event()

    def keep(event: Event) -> None:
        assert isinstance(event, LotTranslated)
        seen.append(event)

    await kafka.ensure_topics(settings)
    task = asyncio.create_task(
        kafka.tail(
            settings,
            topics=[LOTS_TRANSLATED],
            models={LOTS_TRANSLATED: LotTranslated},
            callback=keep,
            started=started,
        )
    )
    try:
        await asyncio.wait_for(started.wait(), 30)
        yield seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def publish_lots(settings: KafkaSettings, job_id: uuid.UUID, lots: int) -> None:
    async with kafka.open_publisher(settings) as publisher:
        await publisher.publish_many(
            assessed(job_id, seq, languages=LANGUAGES) for seq in range(lots)
        )


def per_lot(events: list[LotTranslated], job_id: uuid.UUID) -> dict[int, set[uuid.UUID]]:
    ids: dict[int, set[uuid.UUID]] = collections.defaultdict(set)
    for event in events:
        if event.job_id == job_id:
            ids[event.lot_seq].add(event.event_id)
    return ids


def check_descriptions(events: list[LotTranslated], job_id: uuid.UUID) -> None:
    for event in (e for e in events if e.job_id == job_id):
        assert [(d.language, d.damages) for d in event.descriptions] == [
            ("en", DESCRIPTION_EN),
            ("ru", f"[ru] {DESCRIPTION_EN}"),
            ("de", f"[de] {DESCRIPTION_EN}"),
            ("ru", f"[ru] {DESCRIPTION_EN}"),
        ]
        assert event.missing_images == ["https://img.example/broken/1.jpg"]


async def test_assessed_lots_come_out_translated_once(
    pool: asyncpg.Pool, make_settings: Any, kafka_settings: KafkaSettings, sim: RunningSim
) -> None:
    lots = 40
    await pool.execute("UPDATE translate_work SET status = 'cancelled' WHERE status = 'queued'")
    settings: TranslateSettings = make_settings(
        TranslateSettings,
        openai=OpenAISettings(api_key=SecretStr("sk-test"), base_url=sim.base_url),
        translate=TranslateOptions(workers=4, idle_poll_s=0.2),
    )
    job_id = await create_job(pool, lots)
    async with translated_events(kafka_settings) as seen:
        service = asyncio.create_task(main.run(settings))
        try:
            await publish_lots(kafka_settings, job_id, lots)
            await publish_lots(kafka_settings, job_id, lots)  # a redelivered batch

            async def all_seen() -> bool:
                assert not service.done(), service
                return len(per_lot(seen, job_id)) == lots

            await eventually(all_seen, timeout=60)
            await asyncio.sleep(1.0)  # a duplicate, if any, would arrive now
        finally:
            service.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await service
    ids = per_lot(seen, job_id)
    assert sorted(ids) == list(range(lots))
    assert all(len(events) == 1 for events in ids.values()), "exactly one LotTranslated per lot"
    check_descriptions(seen, job_id)
    # this job's calls only: the relay also publishes outbox rows earlier tests left behind
    ours = [c for c in sim.admin.calls() if (c.get("metadata") or {}).get("job_id") == str(job_id)]
    assert len(ours) == lots * 2
    statuses = await pool.fetch("SELECT DISTINCT status FROM lots WHERE job_id = $1", job_id)
    assert [r["status"] for r in statuses] == ["translating"]


@pytest.mark.e2e
async def test_sigkilled_translate_process_translates_every_lot_once(
    pool: asyncpg.Pool,
    kafka_settings: KafkaSettings,
    migrated: str,
    sim: RunningSim,
    tmp_path: Path,
) -> None:
    lots, workers = 40, 4
    await pool.execute("UPDATE translate_work SET status = 'cancelled' WHERE status = 'queued'")
    sim.admin.config({"latency": {"kinds": {"text": {"dist": "fixed", "ms": 150}}}})
    job_id = await create_job(pool, lots)
    env = settings_env(
        KAFKA__BOOTSTRAP_SERVERS=kafka_settings.bootstrap_servers,
        KAFKA__TOPIC_PREFIX=kafka_settings.topic_prefix,
        DB__URL=migrated,
        OPENAI__BASE_URL=sim.base_url,
        OPENAI__API_KEY="sk-test",
        OPENAI__MAX_RETRIES="0",
        TRANSLATE__WORKERS=str(workers),
        TRANSLATE__LEASE_S="3",
        TRANSLATE__IDLE_POLL_S="0.2",
        TRANSLATE__REAP_INTERVAL_S="0.5",
    )

    async def results() -> int:
        n: int = await pool.fetchval(
            "SELECT count(*) FROM translate_results WHERE job_id = $1", job_id
        )
        return n

    log = tmp_path / "translate.log"
    async with translated_events(kafka_settings) as seen:
        with child("gen_translate", env, log) as first:
            await publish_lots(kafka_settings, job_id, lots)
            await eventually(lambda: _at_least(results, lots // 2), timeout=60)
            first.kill()
        at_kill = await results()
        assert at_kill < lots * 2, "the kill must land mid-stream"
        with child("gen_translate", env, log) as second:

            async def all_seen() -> bool:
                return len(per_lot(seen, job_id)) == lots

            await eventually(all_seen, timeout=90)
            await asyncio.sleep(1.0)  # a duplicate, if any, would arrive now
            assert second.stop() == 0, "SIGTERM stops translate cleanly"
    ids = per_lot(seen, job_id)
    assert sorted(ids) == list(range(lots))
    assert all(len(events) == 1 for events in ids.values()), "exactly one LotTranslated per lot"
    check_descriptions(seen, job_id)
    assert await results() == lots * 2
    calls = sim.admin.stats()["totals"]["calls"]
    assert lots * 2 <= calls <= lots * 2 + workers, "extra calls only for those in flight"


async def _at_least(count: Any, n: int) -> bool:
    return bool(await count() >= n)
