"""Response bodies: v1 in the original's exact JSON style, v2 in plain compact JSON.

The original answered through Flask's ``jsonify`` under gunicorn: compact separators, keys sorted,
non-ASCII escaped as ``\\uXXXX``, one trailing newline. v1 bodies are produced the same way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import Response


def v1_bytes(content: Any) -> bytes:
    return (json.dumps(content, separators=(",", ":"), sort_keys=True) + "\n").encode()


class V1JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return v1_bytes(content)


class V2JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error(
    status: int, message: str, *, headers: Mapping[str, str] | None = None, **extra: Any
) -> Response:
    """The contract's error body ``{"error": ...}`` (v1 style, also used for v2 errors)."""
    return V1JSON({"error": message, **extra}, status_code=status, headers=headers)


def raw(status: int, body: bytes, headers: Mapping[str, str] | None = None) -> Response:
    """A stored answer replayed byte for byte (idempotency)."""
    return Response(body, status_code=status, media_type="application/json", headers=headers)
