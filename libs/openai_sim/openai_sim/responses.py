"""Build the Response object for a validated request (openai-reference §2)."""

from __future__ import annotations

import secrets
from typing import Any

import orjson

from openai_sim import tokens
from openai_sim.content import REFUSAL, answer_text, is_refusal
from openai_sim.validation import Req


def _input_segments(req: Req, images_cfg: dict[str, Any]) -> tuple[int, list[tuple[int, int]]]:
    """Input token count and the (prefix hash, cumulative tokens) boundaries for caching."""
    boundaries: list[tuple[int, int]] = []
    total, prefix = 0, 0
    segments: list[tuple[str, int]] = []
    if req.instructions:
        segments.append((req.instructions, tokens.text_tokens(req.instructions)))
    if req.fmt.get("type") != "text":
        fmt_json = orjson.dumps(req.fmt).decode()
        segments.append((fmt_json, tokens.text_tokens(fmt_json)))
    segments.extend((text, tokens.text_tokens(text)) for text in req.texts)
    width, height = images_cfg["assumed_width"], images_cfg["assumed_height"]
    for source, detail in zip(req.images, req.details, strict=True):
        cost = tokens.image_tokens(req.model, detail, width, height)
        segments.append((source + detail, cost))
    for text, cost in segments:
        total += cost
        prefix = hash((prefix, text))
        boundaries.append((prefix, total))
    return total, boundaries


def build(
    req: Req,
    *,
    seed: int,
    now: float,
    cfg: dict[str, Any],
    cache: tokens.PromptCache | None,
) -> dict[str, Any]:
    model = req.model
    input_tokens, boundaries = _input_segments(req, cfg["images"])
    cached = 0
    key = req.body.get("prompt_cache_key") or ""
    if cache is not None:
        cached = cache.lookup_and_store(model=model.id, key=key, boundaries=boundaries, now=now)
    cache_write = 0
    if model.writes_cache and input_tokens >= tokens.CACHE_MIN:
        cache_write = max(0, tokens.cached_tokens(input_tokens) - cached)
    reasoning = tokens.reasoning_tokens(req.effort, seed) if model.reasoning else 0
    refused = is_refusal(req, cfg["refusal_marker"])
    text = REFUSAL if refused else answer_text(req, seed)
    visible = tokens.text_tokens(text)
    status, msg_status = "completed", "completed"
    limit = req.max_output_tokens
    output: list[dict[str, Any]] = []
    if model.reasoning:
        output.append({"id": "rs_" + secrets.token_hex(16), "type": "reasoning", "summary": []})
    if limit is not None and reasoning + visible > limit:
        status = msg_status = "incomplete"
        if reasoning >= limit:
            reasoning, visible, text = limit, 0, ""
        else:
            visible = limit - reasoning
            text = text[: visible * 4]
    if text or not (status == "incomplete" and model.reasoning):
        part: dict[str, Any] = (
            {"type": "refusal", "refusal": text}
            if refused
            else {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        )
        output.append(
            {
                "id": "msg_" + secrets.token_hex(16),
                "type": "message",
                "role": "assistant",
                "status": msg_status,
                "content": [part],
            }
        )
    created = int(now)
    body = req.body
    return {
        "id": "resp_" + secrets.token_hex(24),
        "object": "response",
        "created_at": created,
        "status": status,
        "background": False,
        "completed_at": created if status == "completed" else None,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": req.instructions,
        "max_output_tokens": limit,
        "max_tool_calls": None,
        "model": model.snapshot,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "prompt_cache_key": body.get("prompt_cache_key"),
        "reasoning": {"effort": req.effort if model.reasoning else None, "summary": None},
        "safety_identifier": None,
        "service_tier": req.service_tier,
        "store": body.get("store", True),
        "temperature": body.get("temperature") or 1.0,
        "text": {"format": req.fmt, "verbosity": req.verbosity},
        "tool_choice": "auto",
        "tools": [],
        "top_logprobs": 0,
        "top_p": body.get("top_p") or 1.0,
        "truncation": "disabled",
        "usage": {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": cache_write},
            "output_tokens": reasoning + visible,
            "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": input_tokens + reasoning + visible,
        },
        "user": None,
        "metadata": req.metadata,
    }


def estimate_tokens(req: Req, images_cfg: dict[str, Any]) -> int:
    """Request-side estimate used by the TPM bucket and enqueued-token accounting."""
    return _input_segments(req, images_cfg)[0]
