"""A request body before any field is looked at: is it JSON, parse it once, and :class:`Rejected`,
the error every check of a request raises.

A :class:`Rejected` carries the status and the ``{"error": ...}`` body, so a lot or image entry of
the wrong type is a 400, never a 500.
"""

from __future__ import annotations

from typing import Any

import orjson


class Rejected(Exception):
    def __init__(self, status: int, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.status = status
        self.body: dict[str, Any] = {"error": error, **extra}


def parse_json(body: bytes | bytearray) -> Any:
    """Parse once with orjson (strict UTF-8, no NaN/Infinity, depth <= 1024); null is refused."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Rejected(400, "Invalid JSON body") from exc
    if data is None:
        raise Rejected(400, "Request body must be a JSON object")
    return data


def is_json(content_type: str | None) -> bool:
    """Flask's ``is_json``: application/json or application/*+json, parameters ignored."""
    mimetype = (content_type or "").split(";", 1)[0].strip().lower()
    return mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    )
