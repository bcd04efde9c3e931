"""Packing claimed items into JSONL batch files: one job and one model per file, at most
``max_lines`` lines, ``max_bytes`` bytes and the model's remaining enqueued-token budget.

The token estimate is the one OpenAI (and the simulator) apply to the uploaded line: bytes / 4
plus a per-image allowance (``tokens_per_image``, conservative: a high-detail image).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import orjson

from gen_common.batch_options import BatchOptions
from gen_common.batch_source import BatchRequest, LineError
from gen_common.db import Conn

ENDPOINT: Final = "/v1/responses"
PREFIX = b'{"custom_id":"'
MIDDLE = b'","method":"POST","url":"' + ENDPOINT.encode() + b'","body":'
LINE_OVERHEAD = len(PREFIX) + len(MIDDLE) + 1 + 64  # + a custom_id of up to 64 characters
ACTIVE_REMOTE = ("validating", "in_progress", "finalizing", "cancelling")


def estimate_tokens(body_json: bytes, tokens_per_image: int) -> int:
    """Enqueued prompt tokens of one line: bytes / 4 plus a per-image allowance."""
    line_bytes = len(body_json) + LINE_OVERHEAD
    return line_bytes // 4 + body_json.count(b'"input_image"') * tokens_per_image


@dataclass(slots=True)
class Chunk:
    job_id: str
    model: str
    items: list[tuple[BatchRequest, bytes]] = field(default_factory=list)
    size: int = 0
    tokens: int = 0


@dataclass(slots=True)
class Packed:
    chunks: list[Chunk] = field(default_factory=list)
    leftover: list[BatchRequest] = field(default_factory=list)  # no token budget left
    rejected: list[tuple[BatchRequest, LineError]] = field(default_factory=list)


def pack(requests: Sequence[BatchRequest], options: BatchOptions, budget: dict[str, int]) -> Packed:
    """Split into files by job, model, lines, bytes and the remaining token budget per model."""
    out = Packed()
    open_chunks: dict[tuple[str, str], Chunk] = {}
    blocked: set[str] = set()
    for req in requests:
        model = req.body.get("model")
        if not isinstance(model, str):
            out.rejected.append((req, LineError("missing_model", "request body has no model")))
            continue
        body = orjson.dumps(req.body)
        size = len(body) + LINE_OVERHEAD
        tokens = estimate_tokens(body, options.tokens_per_image)
        if size > options.max_bytes or tokens > options.token_cap(model):
            message = f"one line is {size} bytes / ~{tokens} enqueued tokens: above the limits"
            out.rejected.append((req, LineError("line_too_large", message)))
            continue
        if model in blocked or tokens > budget.get(model, 0):
            blocked.add(model)  # keep the claim order: nothing later may overtake
            out.leftover.append(req)
            continue
        budget[model] -= tokens
        chunk = open_chunks.get((req.job_id, model))
        if (
            chunk is None
            or len(chunk.items) >= options.max_lines
            or chunk.size + size > options.max_bytes
        ):
            chunk = Chunk(job_id=req.job_id, model=model)
            open_chunks[(req.job_id, model)] = chunk
            out.chunks.append(chunk)
        chunk.items.append((req, body))
        chunk.size += size
        chunk.tokens += tokens
    return out


async def inflight_tokens(conn: Conn, model: str) -> int:
    value = await conn.fetchval(
        """SELECT coalesce(sum(est_tokens), 0) FROM openai_batches
           WHERE model = $1 AND status IN ('preparing', 'uploaded', 'submitted')
             AND coalesce(remote_status, 'validating') = ANY($2::text[])""",
        model,
        list(ACTIVE_REMOTE),
    )
    return int(value)


def line(custom_id: str, body: bytes) -> bytes:
    return PREFIX + custom_id.encode() + MIDDLE + body + b"}"
