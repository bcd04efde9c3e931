"""JSON log lines with the context of the work in hand: job_id, lot_id, lot_seq and trace_id.

Consumer handlers and workers :func:`bind` the ids of the lot they work on (the Kafka runtime
does it for every record from the event's fields); :class:`JsonFormatter` adds the bound fields,
the trace id of :func:`gen_common.tracing.current`, and the record's own ``extra`` to each line.
Context variables are per task, so concurrent workers never see each other's ids.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from datetime import UTC, datetime

import orjson

from gen_common import tracing
from gen_common.settings import LogSettings

# Carried into every log line of the task that set it.
context: contextvars.ContextVar[dict[str, object] | None] = contextvars.ContextVar(
    "log_context", default=None
)
_RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
_NOISY = ("aiokafka", "httpx", "httpcore", "uvicorn.access")


def bind(**fields: object) -> None:
    """Add ``fields`` to this task's log context (None values are left out)."""
    merged = dict(context.get() or {})
    merged.update({k: v for k, v in fields.items() if v is not None})
    context.set(merged)


def bind_lot(*, job_id: object, lot_seq: object = None, lot_id: object = None) -> None:
    """Replace this task's log context with one lot's ids (job_id and lot_id as strings)."""
    fields: dict[str, object] = {"job_id": str(job_id)}
    if lot_seq is not None:
        fields["lot_seq"] = lot_seq
    if lot_id is not None:
        fields["lot_id"] = str(lot_id)
    context.set(fields)


def clear() -> None:
    context.set(None)


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
        line.update(context.get() or {})
        if (trace := tracing.trace_id(tracing.current())) is not None:
            line["trace_id"] = trace
        line.update({k: v for k, v in record.__dict__.items() if k not in _RESERVED})
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def configure(settings: LogSettings, service_name: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.json_format:
        handler.setFormatter(JsonFormatter(service_name))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level)
    for noisy in _NOISY:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
