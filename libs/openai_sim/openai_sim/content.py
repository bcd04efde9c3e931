"""What the simulated model says: schema instances, translations, refusals, image outcomes."""

from __future__ import annotations

import re
import zlib
from typing import Any

import orjson

from openai_sim.errors import ApiError
from openai_sim.schema_instance import instance
from openai_sim.validation import Req

TARGET_RE = re.compile(r"target language:\s*([A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})?)", re.I)
REFUSAL = "I'm sorry, but I can't help with that request."


def check_images(req: Req, images_cfg: dict[str, Any]) -> None:
    """The real API fetches every image first; a failed download rejects the whole request."""
    for source in req.images:
        if source.startswith(("data:", "file-")):
            continue
        if any(p in source for p in images_cfg["timeout_patterns"]):
            raise ApiError(400, f"Timeout while downloading {source}.", code="invalid_image_url")
        if any(p in source for p in images_cfg["broken_patterns"]):
            message = f"Error while downloading {source}."
            if zlib.crc32(source.encode()) % 2:
                raise ApiError(400, message, param="url", code="invalid_value")
            raise ApiError(400, message, code="invalid_image_url")


def is_refusal(req: Req, marker: str) -> bool:
    if not marker:
        return False
    if req.instructions and marker in req.instructions:
        return True
    return any(marker in text for text in req.texts)


def target_language(req: Req) -> str | None:
    code = req.metadata.get("target_language")
    if code:
        return code
    for text in (req.instructions or "", *req.texts):
        match = TARGET_RE.search(text)
        if match:
            return match.group(1)
    return None


def answer_text(req: Req, seed: int) -> str:
    """The visible answer for a non-refusal: JSON for schema formats, text otherwise."""
    kind = req.fmt.get("type")
    if kind == "json_schema":
        schema = req.fmt.get("schema")
        value = instance(schema, seed=seed, images=req.images) if isinstance(schema, dict) else {}
        return orjson.dumps(value).decode()
    if kind == "json_object":
        return orjson.dumps({"result": f"simulated answer {seed % 100_000:05d}"}).decode()
    code = target_language(req)
    last = req.texts[-1] if req.texts else ""
    if code:
        return f"[{code}] {last}"
    return f"Simulated answer {seed % 100_000:05d} ({len(req.images)} images)."
