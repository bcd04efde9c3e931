"""Sync replies: requests waiting for their lot's ``lots.translated`` / ``lots.failed``.

Each ingest process reads those topics from the latest offset with ``gen_common.kafka.tail`` (no
consumer group, so every process sees every reply) and completes the waiting request by lot key.
"""

from __future__ import annotations

import asyncio

from gen_common.events import LOTS_FAILED, LOTS_TRANSLATED, Event, LotEvent, LotFailed
from gen_common.events import LotTranslated as LotTranslated

TOPICS = (LOTS_TRANSLATED, LOTS_FAILED)
MODELS: dict[str, type[Event]] = {LOTS_TRANSLATED: LotTranslated, LOTS_FAILED: LotFailed}
Reply = LotTranslated | LotFailed


class Replies:
    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future[Reply]] = {}

    def expect(self, key: str) -> asyncio.Future[Reply]:
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._waiting[key] = future
        return future

    def forget(self, key: str) -> None:
        self._waiting.pop(key, None)

    def deliver(self, event: Event) -> None:
        """The tail's callback: complete the request waiting for this lot, if any."""
        if not isinstance(event, LotTranslated | LotFailed) or not isinstance(event, LotEvent):
            return
        future = self._waiting.get(event.lot_key)
        if future is not None and not future.done():
            future.set_result(event)

    def __len__(self) -> int:
        return len(self._waiting)
