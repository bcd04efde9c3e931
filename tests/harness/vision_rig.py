"""The rig of the model-fault tests (reliability.md §7 O1, O2): a real ``python -m gen_vision``
wired to the OpenAI simulator (a fixed latency per vision call), an image host, the test's
PostgreSQL and Kafka, with a publisher for its input and an observer of its output.

``async with vision_rig(...) as rig:`` yields once the process serves ``/metrics``; the
simulator's faults are configured through ``rig.sim.admin``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from gen_common import kafka
from gen_common.events import LOTS_ASSESSED, LOTS_FAILED, Event, LotAssessed, LotFailed
from gen_common.settings import KafkaSettings
from openai_sim.process import RunningSim, free_port, running

from tests.harness.images import ImageHost
from tests.harness.processes import Child, child, eventually
from tests.vision.lots import assessed_keys, lot, observe
from tests.vision.vision_process import breaker_gauges, job_calls, vision_env

TOPICS: dict[str, type[Event]] = {LOTS_ASSESSED: LotAssessed, LOTS_FAILED: LotFailed}


@dataclass(frozen=True)
class VisionRig:
    job: uuid.UUID  # every lot the rig submits belongs to this job
    sim: RunningSim
    vision: Child
    log: Path  # the process's JSON log
    seen: list[Event]  # LotAssessed and LotFailed of every job, as they arrive
    _publisher: kafka.Publisher
    _http: httpx.AsyncClient
    _metrics_port: int
    _images: ImageHost

    async def submit(self, start: int, n: int) -> int:
        """Publish lots ``start`` .. ``start + n - 1`` (one servable image each); the next seq."""
        lots = [lot(self.job, i, [self._images.ok(f"{i}")]) for i in range(start, start + n)]
        await self._publisher.publish_many(lots)
        return start + n

    def assessed(self) -> set[str]:
        return assessed_keys(self.seen, self.job)

    async def gauges(self) -> dict[str, float]:
        """The breaker's gauges on the process's ``/metrics`` (see vision_process)."""
        return await breaker_gauges(self._http, self._metrics_port)

    def calls(self) -> list[dict[str, Any]]:
        """The simulator's call log of the job."""
        return job_calls(self.sim, self.job)

    def running(self) -> bool:
        return self.vision.proc is not None and self.vision.proc.poll() is None

    async def _serving(self) -> bool:
        try:
            await self.gauges()
        except httpx.TransportError:
            return False
        return True


@asynccontextmanager
async def vision_rig(
    db_url: str,
    kafka_settings: KafkaSettings,
    pool: asyncpg.Pool,
    tmp_path: Path,
    *,
    workers: int,
    latency_ms: int,
) -> AsyncIterator[VisionRig]:
    await kafka.ensure_topics(kafka_settings)
    metrics_port = free_port()
    log = tmp_path / "vision.log"
    latency = {"latency": {"kinds": {"vision": {"dist": "fixed", "ms": latency_ms}}}}
    with running(latency) as sim, ImageHost() as images:
        env = vision_env(
            db_url,
            kafka_settings,
            sim,
            VISION__WORKERS=str(workers),
            VISION__METRICS_PORT=str(metrics_port),
        )
        async with (
            httpx.AsyncClient(timeout=5) as http,
            observe(kafka_settings, pool, TOPICS) as seen,
            kafka.open_publisher(kafka_settings) as publisher,
        ):
            with child("gen_vision", env, log) as vision:
                rig = VisionRig(
                    uuid.uuid4(), sim, vision, log, seen, publisher, http, metrics_port, images
                )
                await eventually(rig._serving, timeout=60, interval=0.1)
                yield rig
