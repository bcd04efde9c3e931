"""Entry point: build the settings once and serve create_app(settings) with uvicorn."""

from __future__ import annotations

from gen_common import http_server, service

from gen_ingest.app import create_app
from gen_ingest.settings import IngestSettings


async def run(settings: IngestSettings) -> None:
    await http_server.serve(
        create_app(settings),
        host=settings.ingest.host,
        port=settings.ingest.port,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )


def main() -> None:
    settings = IngestSettings()
    # service.run owns the event loop (uvloop), so uvicorn's own loop choice never applies.
    service.run(run(settings), settings.log, name="ingest")
