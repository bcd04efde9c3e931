"""Wire encoding: the original's jsonify style, timestamps, and the response classes.

v1 JSON is what Flask's ``jsonify`` produced under gunicorn: compact, keys sorted, non-ASCII escaped
as ``\\uXXXX``, one trailing newline. orjson does the work; the rare body holding non-ASCII text is
re-encoded with the standard library to get the ASCII escaping.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
from starlette.responses import JSONResponse, Response

_OPTS = orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE


def _default(value: object) -> object:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def dumps(value: Any) -> bytes:
    body = orjson.dumps(value, default=_default, option=_OPTS)
    if body.isascii():
        return body
    text = json.dumps(value, default=_default, separators=(",", ":"), sort_keys=True)
    return text.encode() + b"\n"


class JSONBody(JSONResponse):
    def render(self, content: Any) -> bytes:
        return dumps(content)


class V2Body(JSONResponse):
    """v2 bodies: plain orjson (UTF-8, insertion order), like ingest's v2 answers."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, default=_default)


def json_response(content: Any, status_code: int = 200) -> Response:
    return JSONBody(content, status_code=status_code)


def error(status_code: int, text: str, /, **extra: Any) -> Response:
    return JSONBody({"error": text, **extra}, status_code=status_code)


def v1_time(value: datetime | None) -> str | None:
    """The original's ``datetime.utcnow().isoformat()``: naive UTC, microseconds dropped at 0."""
    if value is None:
        return None
    return value.astimezone(UTC).replace(tzinfo=None).isoformat()


def v2_time(value: datetime | None) -> str | None:
    """RFC 3339 in UTC with ``Z``."""
    if value is None:
        return None
    return value.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"


def money(value: Decimal | float | int) -> float:
    return float(value)
