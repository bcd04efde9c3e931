"""The process runner every entry point ends in: JSON logs, signals, exit codes.

``run(coro, log_settings, name=...)`` configures logging, runs the coroutine, turns SIGTERM and
SIGINT into a cancellation of it (so ``finally`` blocks and ``async with`` exits run), and exits
with 0 after a clean stop, 1 after a crash.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import signal
import sys
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any

import orjson

from gen_common.settings import LogSettings

log = logging.getLogger(__name__)
EXIT_OK = 0
EXIT_CRASH = 1

# Carried into every log line: set by handlers with log_context.set({...}).
log_context: contextvars.ContextVar[dict[str, object] | None] = contextvars.ContextVar(
    "log_context", default=None
)
_RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, service_name: str) -> None:
        super().__init__()
        self.service_name = service_name

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "service": self.service_name,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        line.update(log_context.get() or {})
        line.update({k: v for k, v in record.__dict__.items() if k not in _RESERVED})
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def configure_logging(settings: LogSettings, service_name: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.json_format:
        handler.setFormatter(JsonFormatter(service_name))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level)
    for noisy in ("aiokafka", "httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


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
    """Run a service's main coroutine until it ends or a signal stops it, then exit."""
    configure_logging(settings, name)
    code = asyncio.run(_supervise(coro))
    log.info("exited", extra={"exit_code": code})
    raise SystemExit(code)
