"""Batch input validation and output/error line formats (openai-reference §4.2, §4.5, §4.6)."""

from __future__ import annotations

import secrets
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from openai_sim.errors import ApiError

EXPIRED = "This request could not be executed before the completion window expired."
CANCELLED = "This request was not executed because the batch was cancelled."
MAX_REPORTED_ERRORS = 1000

LineRunner = Callable[[Any, int], dict[str, Any]]


def batch_error(
    code: str, message: str, *, line: int | None = None, param: str | None = None
) -> dict[str, Any]:
    return {"code": code, "message": message, "param": param, "line": line}


@dataclass(slots=True)
class Parsed:
    """The validated input: (custom_id, raw line) per task, the model, and any errors."""

    tasks: list[tuple[str, bytes]] = field(default_factory=list)
    model: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)


def check_line(parsed: Parsed, seen: set[str], *, number: int, raw: bytes, endpoint: str) -> None:
    def fail(code: str, message: str, param: str | None = None) -> None:
        if len(parsed.errors) < MAX_REPORTED_ERRORS:
            parsed.errors.append(batch_error(code, message, line=number, param=param))

    try:
        item = orjson.loads(raw)
    except orjson.JSONDecodeError:
        fail("invalid_json_line", "This line is not parseable as valid JSON.")
        return
    if not isinstance(item, dict):
        fail("invalid_json_line", "This line is not parseable as valid JSON.")
        return
    custom_id, url, body = item.get("custom_id"), item.get("url"), item.get("body")
    for name, value in (
        ("custom_id", custom_id),
        ("url", url),
        ("body", body),
        ("method", item.get("method")),
    ):
        if value is None:
            fail("missing_required_parameter", f"Missing required parameter: '{name}'.", name)
            return
    if not isinstance(custom_id, str) or not isinstance(body, dict):
        fail("invalid_request", "Invalid 'custom_id' or 'body'.", "custom_id")
        return
    if url != endpoint:
        fail(
            "url_mismatch",
            f"The provided URL '{url}' does not match the batch endpoint '{endpoint}'.",
            "url",
        )
        return
    model = body.get("model")
    if parsed.model is None and isinstance(model, str):
        parsed.model = model
    elif model != parsed.model:
        fail(
            "model_mismatch",
            f"The provided model '{model}' does not match the model "
            f"'{parsed.model}' used by the other requests in this file.",
            "body.model",
        )
        return
    if custom_id in seen:
        fail(
            "duplicate_custom_id",
            f"The custom_id '{custom_id}' is duplicated in the input "
            "file; custom_id values must be unique within a batch.",
            "custom_id",
        )
        return
    seen.add(custom_id)
    parsed.tasks.append((custom_id, raw))


def file_errors(data: bytes, *, max_bytes: int) -> list[dict[str, Any]]:
    if len(data) > max_bytes:
        return [
            batch_error(
                "file_too_large",
                f"The input file is {len(data)} bytes; the maximum "
                f"for a batch input file is {max_bytes} bytes.",
            )
        ]
    if not data.strip():
        return [batch_error("empty_file", "The input file is empty.")]
    return []


def too_many(count: int, limit: int) -> dict[str, Any]:
    return batch_error(
        "too_many_tasks",
        f"The input file contains {count} requests; a batch may contain at most {limit} requests.",
    )


def run_line(custom_id: str, raw: bytes, run: LineRunner) -> tuple[bool, bytes, dict[str, Any]]:
    """Run one task; returns (ok, output line, usage or {})."""
    request_id = "req_" + secrets.token_hex(16)
    body = orjson.loads(raw)["body"]
    try:
        result = run(body, zlib.crc32(raw))
    except ApiError as exc:
        status, payload, usage, ok = exc.status, exc.body(), {}, False
    else:
        status, payload, usage, ok = 200, result, result["usage"], True
    line = {
        "id": "batch_req_" + secrets.token_hex(16),
        "custom_id": custom_id,
        "response": {"status_code": status, "request_id": request_id, "body": payload},
        "error": None,
    }
    return ok, orjson.dumps(line), usage


def skipped_line(custom_id: str, code: str, message: str) -> bytes:
    return orjson.dumps(
        {
            "id": "batch_req_" + secrets.token_hex(16),
            "custom_id": custom_id,
            "response": None,
            "error": {"code": code, "message": message},
        }
    )
