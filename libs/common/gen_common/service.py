"""The process runner every entry point ends in: JSON logs (gen_common.logs), signals, exit codes.

``run(coro, log_settings, name=...)`` configures logging, runs the coroutine on uvloop, turns
SIGTERM and SIGINT into a cancellation of it (so ``finally`` blocks and ``async with`` exits
run), and exits with 0 after a clean stop, 1 after a crash.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Coroutine
from typing import Any

import uvloop

from gen_common.logs import JsonFormatter, context
from gen_common.logs import configure as configure_logging
from gen_common.settings import LogSettings

__all__ = ["EXIT_CRASH", "EXIT_OK", "JsonFormatter", "configure_logging", "log_context", "run"]

log = logging.getLogger(__name__)
EXIT_OK = 0
EXIT_CRASH = 1

# Carried into every log line (kept under its old name; see gen_common.logs).
log_context = context


async def _supervise(coro: Coroutine[Any, Any, None]) -> int:
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(coro)
    stopping = False

    def _stop(signame: str) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            log.info("stopping", extra={"signal": signame})
            task.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _stop, sig.name)
    try:
        await task
    except asyncio.CancelledError:
        return EXIT_OK if stopping else EXIT_CRASH
    except Exception:
        log.exception("crashed")
        return EXIT_CRASH
    return EXIT_OK


def run(coro: Coroutine[Any, Any, None], settings: LogSettings, *, name: str) -> None:
    """Run a service's main coroutine on uvloop until it ends or a signal stops it, then exit.

    uvloop, not asyncio's selector loop: the services spend their time in socket round trips
    (PostgreSQL, Kafka, HTTP), and each costs less CPU on uvloop's libuv transports."""
    configure_logging(settings, name)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        code = runner.run(_supervise(coro))
    log.info("exited", extra={"exit_code": code})
    raise SystemExit(code)
