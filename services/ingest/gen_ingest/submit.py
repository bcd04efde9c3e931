"""Creating jobs: the jobs row, then every lot on ``lots.submitted`` (acks=all), then the answer.

A job exists for a client only once every lot event is acknowledged by Kafka. When publishing
fails, or is not acknowledged within ``publish_timeout_s`` (a Kafka outage), the jobs row is
deleted and the job id recorded in ``aborted_jobs`` in one transaction (the answer is 503); lots
of that job that did reach Kafka, then or later, are ignored by the consumers (they check
``aborted_jobs`` before creating a job from an event).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import asyncpg
import orjson
from gen_common import kafka
from gen_common.events import LOTS_SUBMITTED, Mode, lot_key
from gen_common.image_check import ImageChecker

from gen_ingest import store
from gen_ingest.replies import Replies
from gen_ingest.settings import IngestOptions
from gen_ingest.validate import Request

log = logging.getLogger(__name__)
ApiVersion = Literal[1, 2]


class PublishFailed(Exception):
    """Not every lot could be made durable; no job exists."""


@dataclass(frozen=True, slots=True)
class Deps:
    pool: asyncpg.Pool
    publisher: kafka.Publisher
    replies: Replies
    options: IngestOptions
    v1_key: bytes
    images: ImageChecker | None = None  # test-image-validation (None: the route answers 503)


@dataclass(frozen=True, slots=True)
class Created:
    job_id: uuid.UUID
    mode: Mode
    created_at: datetime


def mode_for(total_lots: int, opts: IngestOptions) -> Mode:
    return "realtime" if total_lots <= opts.realtime_max_lots else "batch"


def events(
    job_id: uuid.UUID, req: Request, *, mode: Mode, client_id: str, api_version: ApiVersion
) -> Iterator[tuple[str, bytes]]:
    """The job's LotSubmitted events as (lot key, JSON), encoded straight from the checked lots.

    validate.py has enforced every constraint of the model; building 50,000 pydantic objects
    would cost more than the rest of the request (tests decode these with the model).
    """
    now = datetime.now(UTC)
    total = len(req.lots)
    for seq, lot in enumerate(req.lots):
        yield (
            lot_key(job_id, seq),
            orjson.dumps(
                {
                    "event_id": uuid.uuid4(),
                    "type": "lot.submitted",
                    "version": 1,
                    "occurred_at": now,
                    "job_id": job_id,
                    "lot_seq": seq,
                    "lot_id": lot.lot_id,
                    "images": lot.images,
                    "additional_info": lot.additional_info,
                    "languages": req.languages,
                    "mode": mode,
                    "total_lots": total,
                    "client_id": client_id,
                    "api_version": api_version,
                    "webhook": lot.webhook,
                    "job_webhook_url": req.webhook_url,
                }
            ),
        )


async def create_job(
    deps: Deps,
    req: Request,
    *,
    mode: Mode,
    client_id: str,
    api_version: ApiVersion,
    job_id: uuid.UUID | None = None,
) -> Created:
    job_id = job_id or uuid.uuid4()
    async with deps.pool.acquire() as conn:
        created_at = await store.insert_job(
            conn,
            job_id=job_id,
            client_id=client_id,
            api_version=api_version,
            mode=mode,
            languages=req.languages,
            total_lots=len(req.lots),
            webhook_url=req.webhook_url,
        )
    await publish_lots(
        deps, job_id, events(job_id, req, mode=mode, client_id=client_id, api_version=api_version)
    )
    return Created(job_id, mode, created_at)


async def publish_lots(deps: Deps, job_id: uuid.UUID, records: Iterable[tuple[str, bytes]]) -> None:
    """Every lot event of the job, acks=all, within ``publish_timeout_s``. On any failure
    (Kafka errors, the deadline, cancellation) the job is aborted: no half-created job."""
    try:
        async with asyncio.timeout(deps.options.publish_timeout_s):
            await deps.publisher.publish_encoded(LOTS_SUBMITTED, records)
    except BaseException as exc:
        # Records still queued in the producer may reach Kafka later: consumers skip them.
        await asyncio.shield(_abort(deps.pool, job_id, repr(exc)))
        if isinstance(exc, Exception):
            raise PublishFailed(str(job_id)) from exc
        raise


async def _abort(pool: asyncpg.Pool, job_id: uuid.UUID, reason: str) -> None:
    log.warning("job aborted: publishing failed", extra={"job_id": str(job_id), "error": reason})
    async with pool.acquire() as conn, conn.transaction():
        await store.abort_job(conn, job_id, reason)
