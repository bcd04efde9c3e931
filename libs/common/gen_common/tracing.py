"""W3C trace context (``traceparent``) carried from the HTTP request through every Kafka record.

A trace starts at ingest (or comes with the request's own ``traceparent`` header). Every record
a service produces carries :func:`child` of the context it works in: the same trace id, a new
span id. Consumers :func:`bind` the incoming record's header, so the logs of its handling carry
the trace id and what the handler produces continues the trace. Outbox rows store the context,
so events published later by the relay continue it too.
"""

from __future__ import annotations

import contextvars
import re
import secrets
from collections.abc import Iterable

TRACEPARENT = "traceparent"
_FORMAT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16

_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("traceparent", default=None)


def valid(traceparent: str | None) -> bool:
    match = _FORMAT.match(traceparent or "")
    return match is not None and match[1] != _ZERO_TRACE and match[2] != _ZERO_SPAN


def new() -> str:
    """A new trace: random trace id and span id, sampled."""
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def child(parent: str | None) -> str:
    """The context of an operation under ``parent``: same trace id and flags, new span id."""
    if parent is None or not valid(parent):
        return new()
    return f"00-{parent[3:35]}-{secrets.token_hex(8)}-{parent[53:55]}"


def trace_id(traceparent: str | None) -> str | None:
    return traceparent[3:35] if traceparent is not None and valid(traceparent) else None


def current() -> str | None:
    """The traceparent bound in this task (None outside any request or record)."""
    return _current.get()


def bind(traceparent: str | None) -> None:
    """Bind ``traceparent`` for this task and the tasks it starts. Check what comes from outside
    first (:func:`from_headers` and the HTTP middleware do): this hot-path call does not."""
    _current.set(traceparent)


def from_headers(headers: Iterable[tuple[str, bytes]] | None) -> str | None:
    """The ``traceparent`` of a Kafka record's headers, if present and valid."""
    for name, value in headers or ():
        if name == TRACEPARENT:
            text = bytes(value).decode("ascii", errors="replace").strip()
            return text if valid(text) else None
    return None
