"""Consumer lag: a group's committed offsets against its topics' end offsets (for /metrics)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from gen_common.errors import InfrastructureError
from gen_common.settings import KafkaSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PartitionLag:
    topic: str  # base name (without the topic prefix)
    partition: int
    committed: int | None  # None: the group never committed on this partition
    end: int

    @property
    def lag(self) -> int:
        return max(0, self.end - (self.committed or 0))


class LagProbe:
    """Reads a consumer group's committed offsets and its topics' end offsets on demand."""

    def __init__(
        self,
        admin: AIOKafkaAdminClient,
        consumer: AIOKafkaConsumer,
        settings: KafkaSettings,
        *,
        group: str,
        topics: Sequence[str],
    ) -> None:
        self._admin = admin
        self._consumer = consumer
        self._settings = settings
        self.group = group
        self._names = {settings.topic(t): t for t in topics}

    async def read(self, *, attempts: int = 4, backoff_s: float = 0.2) -> list[PartitionLag]:
        """Retries retriable Kafka errors (a fresh cluster has no group coordinator until asked
        once); raises :class:`~gen_common.errors.InfrastructureError` when Kafka cannot answer."""
        for attempt in range(attempts):
            try:
                return await self._read()
            except KafkaError as exc:
                if not exc.retriable or attempt == attempts - 1:
                    raise InfrastructureError(f"consumer lag unavailable: {exc!r}") from exc
                log.info("consumer lag: retrying", extra={"error": repr(exc)})
            await asyncio.sleep(backoff_s * 2**attempt)
        raise AssertionError("unreachable")

    async def _read(self) -> list[PartitionLag]:
        described = await self._admin.describe_topics(list(self._names))
        partitions = [
            TopicPartition(d["topic"], p["partition"])
            for d in described
            if d["error_code"] == 0
            for p in d["partitions"]
        ]
        if not partitions:
            return []
        committed = await self._admin.list_consumer_group_offsets(
            self._settings.topic(self.group), partitions=partitions
        )
        ends = await self._consumer.end_offsets(partitions)
        out = []
        for tp in sorted(partitions):
            meta = committed.get(tp)
            offset = meta.offset if meta is not None and meta.offset >= 0 else None
            out.append(PartitionLag(self._names[tp.topic], tp.partition, offset, ends[tp]))
        return out


@asynccontextmanager
async def open_lag_probe(
    settings: KafkaSettings, *, group: str, topics: Sequence[str]
) -> AsyncIterator[LagProbe]:
    """A :class:`LagProbe` for ``group`` (base name) on ``topics`` (base names)."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers, client_id=settings.client_id
    )
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        client_id=settings.client_id,
        group_id=None,
        enable_auto_commit=False,
    )
    await admin.start()
    try:
        await consumer.start()
        try:
            yield LagProbe(admin, consumer, settings, group=group, topics=topics)
        finally:
            await consumer.stop()
    finally:
        await admin.close()
