"""Serve an ASGI app with uvicorn inside ``gen_common.service.run``.

uvicorn's own signal handlers are switched off (the service runner owns SIGTERM/SIGINT); when the
runner cancels the task, the server stops accepting, finishes requests in flight and runs the
app's lifespan shutdown before the cancellation propagates.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn


class _Server(uvicorn.Server):
    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(app: Any, *, host: str, port: int, **options: Any) -> None:
    """Serve until cancelled, then shut down gracefully. ``options`` go to uvicorn.Config."""
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, **options)
    server = _Server(config)
    serving = asyncio.ensure_future(server.serve())
    try:
        await asyncio.shield(serving)
    except asyncio.CancelledError:
        server.should_exit = True
        await serving
        raise
