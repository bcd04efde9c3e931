"""Structured Outputs strict-mode rules, answered as the real 400 invalid_json_schema."""

from __future__ import annotations

from typing import Any

from openai_sim.errors import ApiError, bad

PARAM = "text.format.schema"


def _error(name: str, context: tuple[str, ...], detail: str) -> ApiError:
    return bad(
        f"Invalid schema for response_format '{name}': In context={context!r}, {detail}",
        param=PARAM,
        code="invalid_json_schema",
    )


def check_strict(name: str, schema: Any) -> None:
    """Raise ApiError unless ``schema`` satisfies strict mode (recursively)."""
    if not isinstance(schema, dict):
        raise _error(name, (), "schema must be a JSON Schema object.")
    if schema.get("type") != "object" or "anyOf" in schema:
        got = schema.get("type")
        raise bad(
            f"Invalid schema for response_format '{name}': schema must be a JSON Schema of "
            f"'type: \"object\"', got 'type: \"{got}\"'.",
            param=PARAM,
            code="invalid_json_schema",
        )
    _walk(name, schema, ())


def _walk(name: str, node: Any, context: tuple[str, ...]) -> None:
    if not isinstance(node, dict):
        return
    types = node.get("type")
    is_object = types == "object" or (isinstance(types, list) and "object" in types)
    if is_object or "properties" in node:
        _check_object(name, node, context)
    for key in ("anyOf", "allOf", "oneOf"):
        for i, sub in enumerate(node.get(key) or ()):
            _walk(name, sub, (*context, key, str(i)))
    if isinstance(node.get("items"), dict):
        _walk(name, node["items"], (*context, "items"))
    for defs_key in ("$defs", "definitions"):
        for def_name, sub in (node.get(defs_key) or {}).items():
            _walk(name, sub, (*context, defs_key, def_name))


def _check_object(name: str, node: dict[str, Any], context: tuple[str, ...]) -> None:
    if node.get("additionalProperties") is not False:
        raise _error(
            name, context, "'additionalProperties' is required to be supplied and to be false."
        )
    props = node.get("properties") or {}
    required = node.get("required")
    if not isinstance(required, list):
        required = []
    for key in props:
        if key not in required:
            raise _error(
                name,
                context,
                "'required' is required to be supplied and to be an array including every key "
                f"in properties. Missing '{key}'.",
            )
    for extra in required:
        if extra not in props:
            raise _error(name, context, f"Extra required key '{extra}' supplied.")
    for key, sub in props.items():
        _walk(name, sub, (*context, "properties", key))
