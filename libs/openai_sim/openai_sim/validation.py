"""Validation of a POST /v1/responses body into a normalized request (openai-reference §1, §7)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from openai_sim import errors, input_parts, models
from openai_sim.errors import bad
from openai_sim.schema_strict import check_strict

NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
TIERS = {
    "auto": "default",
    "default": "default",
    "flex": "flex",
    "scale": "scale",
    "priority": "priority",
    "fast": "priority",
    "ultrafast": "ultrafast",
}


@dataclass(slots=True)
class Req:
    body: dict[str, Any]
    model: models.Model
    instructions: str | None = None
    texts: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)  # URL or file id, in order
    details: list[str] = field(default_factory=list)
    effort: str | None = None
    max_output_tokens: int | None = None
    fmt: dict[str, Any] = field(default_factory=lambda: {"type": "text"})
    verbosity: str = "medium"
    metadata: dict[str, str] = field(default_factory=dict)
    service_tier: str = "default"


def parse(body: Any, *, now: float) -> Req:
    if not isinstance(body, dict):
        raise bad(errors.JSON_PARSE_MESSAGE)
    model_id = body.get("model")
    if model_id is None:
        raise errors.missing("model")
    if not isinstance(model_id, str):
        raise errors.invalid_type("model", "a string", model_id)
    model = models.lookup(model_id, now)
    if model is None:
        raise errors.model_not_found(model_id)
    req = Req(body=body, model=model)
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise errors.invalid_type("instructions", "a string", instructions)
    req.instructions = instructions
    input_parts.parse_input(req, body.get("input"))
    _reasoning(req, body.get("reasoning"))
    _sampling(req, body)
    _max_tokens(req, body.get("max_output_tokens"))
    _text(req, body.get("text"))
    _metadata(req, body.get("metadata"))
    tier = body.get("service_tier") or "auto"
    if tier not in TIERS:
        raise errors.unsupported_value("service_tier", tier, tuple(TIERS))
    req.service_tier = TIERS[tier]
    return req


def _reasoning(req: Req, value: Any) -> None:
    if value is None:
        req.effort = req.model.default_effort
        return
    if not req.model.reasoning:
        raise errors.unsupported_parameter("reasoning.effort")
    if not isinstance(value, dict):
        raise errors.invalid_type("reasoning", "an object", value)
    effort = value.get("effort")
    if effort is None:
        effort = req.model.default_effort
    elif effort not in req.model.efforts:
        raise errors.unsupported_value("reasoning.effort", effort, req.model.efforts)
    req.effort = effort


def _sampling(req: Req, body: dict[str, Any]) -> None:
    for param in ("temperature", "top_p"):
        value = body.get(param)
        if value is None:
            continue
        if req.model.reasoning:
            raise errors.unsupported_parameter(param)
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise errors.invalid_type(param, "a decimal", value)


def _max_tokens(req: Req, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool):
        raise errors.invalid_type("max_output_tokens", "an integer", value)
    if value < 16:
        raise bad(
            f"Invalid 'max_output_tokens': integer below minimum value. Expected a value "
            f">= 16, but got {value} instead.",
            param="max_output_tokens",
            code="integer_below_min_value",
        )
    req.max_output_tokens = value


def _text(req: Req, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        raise errors.invalid_type("text", "an object", value)
    verbosity = value.get("verbosity")
    if verbosity is not None:
        if verbosity not in req.model.verbosities:
            raise errors.unsupported_value("verbosity", verbosity, req.model.verbosities)
        req.verbosity = verbosity
    fmt = value.get("format")
    if fmt is None:
        return
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind not in ("text", "json_object", "json_schema"):
        raise bad(
            f"Invalid value: '{kind}'. Supported values are: 'text', 'json_object', and "
            "'json_schema'.",
            param="text.format.type",
            code="invalid_value",
        )
    assert isinstance(fmt, dict)
    if kind == "json_schema":
        name = fmt.get("name")
        if name is None:
            raise errors.missing("text.format.name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise bad(
                "Invalid 'text.format.name': string does not match pattern. Expected a "
                "string that matches the pattern '^[a-zA-Z0-9_-]+$'.",
                param="text.format.name",
                code="invalid_value",
            )
        if "schema" not in fmt:
            raise errors.missing("text.format.schema")
        if fmt.get("strict"):
            check_strict(name, fmt["schema"])
    req.fmt = fmt


def _metadata(req: Req, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        raise errors.invalid_type("metadata", "an object", value)
    if len(value) > 16:
        raise bad(
            "Invalid 'metadata': too many properties. Expected an object with at most 16 "
            f"properties, but got an object with {len(value)} properties instead.",
            param="metadata",
            code="object_above_max_size",
        )
    for key, item in value.items():
        if len(key) > 64:
            raise bad(
                f"Invalid 'metadata': key too long. Expected a key with maximum length 64, "
                f"but got a key with length {len(key)} instead.",
                param="metadata",
                code="invalid_value",
            )
        if not isinstance(item, str):
            raise errors.invalid_type(f"metadata.{key}", "a string", item)
        if len(item) > 512:
            raise bad(
                f"Invalid 'metadata.{key}': string too long. Expected a string with maximum "
                f"length 512, but got a string with length {len(item)} instead.",
                param=f"metadata.{key}",
                code="string_above_max_length",
            )
    req.metadata = value
