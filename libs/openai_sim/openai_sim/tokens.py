"""The token model and the prompt-cache simulation (openai-reference §5.4, §6).

Token model: text costs ceil(chars / 4); a json_schema format costs ceil(len(json) / 4); an image
costs patches x the model's multiplier, assuming every image is ``assumed_width`` x
``assumed_height`` (default 1024x768): ``low`` fits it in 512x512, ``high`` uses a 1,536-patch
budget (2,500 on models with ``original``), ``original`` 10,000 patches. Reasoning tokens depend
on the effort (table below) plus a request-seeded jitter of up to 63.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from functools import lru_cache

from openai_sim.models import Model

REASONING_BASE = {
    "none": 0,
    "minimal": 8,
    "low": 64,
    "medium": 192,
    "high": 512,
    "xhigh": 1024,
    "max": 2048,
}
CACHE_MIN = 1024
CACHE_STEP = 128


def text_tokens(text: str) -> int:
    return (len(text) + 3) // 4


@lru_cache(maxsize=256)
def image_tokens(model: Model, detail: str, width: int, height: int) -> int:
    if detail == "low":
        scale = min(1.0, 512 / max(width, height))
        width, height = int(width * scale), int(height * scale)
        budget = 10_000
    elif detail == "original":
        budget = 10_000
    else:
        budget = 2_500 if "original" in model.details else 1_536
    patches = math.ceil(width / 32) * math.ceil(height / 32)
    if patches > budget:
        scale = math.sqrt(32 * 32 * budget / (width * height))
        while math.floor(width * scale / 32) * math.floor(height * scale / 32) > budget:
            scale *= 0.99
        patches = math.floor(width * scale / 32) * math.floor(height * scale / 32)
    return round(patches * model.image_multiplier)


def reasoning_tokens(effort: str | None, seed: int) -> int:
    if effort is None or effort == "none":
        return 0
    return REASONING_BASE.get(effort, 192) + seed % 64


class PromptCache:
    """Exact-prefix cache per (model, prompt_cache_key), keyed at segment boundaries."""

    def __init__(self, *, ttl_s: float, max_entries: int) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str, int], float] = OrderedDict()

    def lookup_and_store(
        self, *, model: str, key: str, boundaries: list[tuple[int, int]], now: float
    ) -> int:
        """``boundaries`` are (prefix hash, cumulative tokens); returns the cached token count."""
        shared = 0
        for prefix_hash, tokens in reversed(boundaries):
            if tokens < CACHE_MIN:
                break
            seen = self._entries.get((model, key, prefix_hash))
            if seen is not None and now - seen <= self.ttl_s:
                shared = tokens
                break
        for prefix_hash, tokens in boundaries:
            if tokens >= CACHE_MIN:
                entry = (model, key, prefix_hash)
                self._entries[entry] = now
                self._entries.move_to_end(entry)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return cached_tokens(shared)

    def clear(self) -> None:
        self._entries.clear()


def cached_tokens(shared: int) -> int:
    if shared < CACHE_MIN:
        return 0
    return shared - shared % CACHE_STEP
