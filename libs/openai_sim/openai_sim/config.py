"""Simulator settings: one mutable tree of plain dicts, merged from --config and /_sim/config.

Kept as plain data (not pydantic) so the hot path reads a dict key, not a model attribute chain.
"""

from __future__ import annotations

import copy
from typing import Any

GiB = 1024 * 1024 * 1024

DEFAULTS: dict[str, Any] = {
    "seed": 1234,
    "auth": {"key_prefix": "sk-"},
    "organization": "org-sim",
    "call_log_size": 10_000,
    "refusal_marker": "[[refuse]]",
    "images": {
        "broken_patterns": ["/broken/", ".broken.jpg"],
        "timeout_patterns": ["/timeout/"],
        "assumed_width": 1024,
        "assumed_height": 768,
    },
    # latency specs: {"dist": "fixed", "ms": 10} | {"dist": "uniform", "min_ms", "max_ms"}
    # | {"dist": "normal", "mean_ms", "stddev_ms"}; "kinds" keys: "vision", "text".
    "latency": {"default": None, "endpoints": {}, "kinds": {}},
    "faults": {
        "endpoints": None,  # None = every /v1 endpoint, else a list of endpoint names
        "error_500": 0.0,
        "error_503": 0.0,
        "should_retry": None,  # None = no x-should-retry header, else "true"/"false"
        "timeout": 0.0,
        "timeout_s": 5.0,
        "hang": 0.0,
        "malformed": 0.0,
        "drop": 0.0,
    },
    # storm: {"kind": "429"|"503"|"500"|"insufficient_quota", "duration_s": T,
    #         "retry_after_ms": N, "should_retry": None|"true"|"false", "endpoints": None|[...]}
    "storm": None,
    "rate_limits": {
        "default": {"rpm": 1_000_000, "tpm": 10_000_000_000},
        "models": {},
        "insufficient_quota": False,
    },
    "cache": {"ttl_s": 600.0, "max_entries": 20_000},
    "clock": {"speed": 1.0},
    "batch": {
        "validating_s": 5.0,
        "finalizing_s": 5.0,
        "cancelling_s": 5.0,
        "lines_per_sim_second": 50.0,
        "completion_window_s": 86_400.0,
        "max_tasks": 50_000,
        "max_file_bytes": 200 * 1024 * 1024,
        "enqueued_token_limits": {},
        "default_enqueued_token_limit": 1_000_000_000_000,
        "chunk_lines": 500,
    },
    "files": {"max_upload_bytes": 512 * 1024 * 1024},
}


def merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``patch`` into ``base`` in place; dict values merge, anything else replaces."""
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def build(patch: dict[str, Any] | None = None) -> dict[str, Any]:
    return merge(copy.deepcopy(DEFAULTS), patch or {})
