"""An outbox relay process for the fault tests (C4): publishes ``outbox`` rows until stopped.

python -m tests.harness.relay_process   (settings from the environment)
"""

from __future__ import annotations

from gen_common import db, kafka, outbox, service
from gen_common.settings import ServiceSettings


async def run(settings: ServiceSettings) -> None:
    async with (
        db.open_pool(settings.db) as pool,
        kafka.open_publisher(settings.kafka) as publisher,
    ):
        await outbox.relay(pool, publisher)


def main() -> None:
    settings = ServiceSettings()
    service.run(run(settings), settings.log, name="outbox-relay")


if __name__ == "__main__":
    main()
