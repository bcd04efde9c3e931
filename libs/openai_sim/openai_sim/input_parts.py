"""The ``input`` of a Responses request: messages of input_text and input_image parts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from openai_sim import errors
from openai_sim.errors import bad

if TYPE_CHECKING:
    from openai_sim.validation import Req

ROLES = ("user", "assistant", "system", "developer")


def parse_input(req: Req, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, str):
        req.texts.append(value)
        return
    if not isinstance(value, list):
        raise errors.invalid_type("input", "a string or array", value)
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise errors.invalid_type(f"input[{i}]", "an object", item)
        role = item.get("role")
        if role not in ROLES:
            raise bad(
                f"Invalid value: '{role}'. Supported values are: {errors.quote_list(ROLES)}.",
                param=f"input[{i}].role",
                code="invalid_value",
            )
        content = item.get("content")
        if isinstance(content, str):
            req.texts.append(content)
        elif isinstance(content, list):
            for j, part in enumerate(content):
                _part(req, part, f"input[{i}].content[{j}]")
        else:
            raise errors.missing(f"input[{i}].content")


def _part(req: Req, part: Any, where: str) -> None:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in ("input_text", "output_text"):
        text = part.get("text")
        if not isinstance(text, str):
            raise errors.missing(f"{where}.text")
        req.texts.append(text)
    elif kind == "input_image":
        url, file_id = part.get("image_url"), part.get("file_id")
        if (url is None) == (file_id is None):
            raise bad(
                f"Invalid '{where}': exactly one of 'image_url' or 'file_id' must be provided.",
                param=where,
                code="invalid_value",
            )
        source = url if url is not None else file_id
        if not isinstance(source, str) or not source:
            raise errors.invalid_type(f"{where}.image_url", "a string", source)
        if url is not None and not url.startswith(("https://", "http://", "data:image/")):
            raise bad(
                f"Invalid '{where}.image_url': expected a valid URL, but got a value "
                "with an invalid format.",
                param=f"{where}.image_url",
                code="invalid_value",
            )
        detail = part.get("detail") or "auto"
        if detail not in req.model.details:
            raise errors.unsupported_value(f"{where}.detail", detail, req.model.details)
        req.images.append(source)
        req.details.append(req.model.auto_detail if detail == "auto" else detail)
    else:
        raise bad(
            f"Invalid value: '{kind}'. Supported values are: 'input_text' and 'input_image'.",
            param=f"{where}.type",
            code="invalid_value",
        )
