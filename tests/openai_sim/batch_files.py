"""Building batch input files for the tests."""

from __future__ import annotations

import json
from typing import Any

from openai import OpenAI
from openai.types import Batch, FileObject


def line(
    custom_id: str,
    *,
    model: str = "gpt-6-luna",
    text: str = "hi",
    images: list[str] | None = None,
    url: str = "/v1/responses",
) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "input_text", "text": text}]
    content += [{"type": "input_image", "image_url": u, "detail": "low"} for u in images or []]
    body = {
        "model": model,
        "input": [{"role": "user", "content": content}],
        "reasoning": {"effort": "low"},
    }
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": body}


def upload(client: OpenAI, lines: list[dict[str, Any]] | bytes) -> FileObject:
    data = lines if isinstance(lines, bytes) else "\n".join(map(json.dumps, lines)).encode()
    return client.files.create(file=("input.jsonl", data), purpose="batch")


def start(client: OpenAI, lines: list[dict[str, Any]] | bytes) -> Batch:
    uploaded = upload(client, lines)
    return client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/responses", completion_window="24h"
    )


def read_lines(client: OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    text = client.files.content(file_id).text
    return [json.loads(row) for row in text.splitlines()]
