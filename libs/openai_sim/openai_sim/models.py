"""The model table as of late November 2026 (openai-reference.md §7)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

FULL_EFFORTS = ("none", "low", "medium", "high", "xhigh", "max")
GPT5_EFFORTS = ("minimal", "low", "medium", "high")
GPT54_EFFORTS = ("none", "low", "medium", "high", "xhigh")
PATCH_DETAILS = ("low", "high", "auto")
ALL_DETAILS = ("low", "high", "auto", "original")


@dataclass(frozen=True, slots=True)
class Model:
    id: str
    snapshot: str  # echoed in responses
    created: int
    efforts: tuple[str, ...] = ()  # empty = not a reasoning model
    default_effort: str | None = None
    details: tuple[str, ...] = PATCH_DETAILS
    auto_detail: str = "high"  # what detail "auto" means
    image_multiplier: float = 1.62
    verbosities: tuple[str, ...] = ("low", "medium", "high")
    shutdown_date: str | None = None  # ISO date; on/after it the model answers 404
    retired: bool = False  # already shut down, whatever the clock says
    pre_gpt5: bool = False  # no prompt-cache discount in batch
    writes_cache: bool = False  # reports cache_write_tokens (gpt-5.6+)

    @property
    def reasoning(self) -> bool:
        return bool(self.efforts)


def _m(model_id: str, **kw: object) -> Model:
    kw.setdefault("snapshot", model_id)
    kw.setdefault("created", 1_758_499_200)
    return Model(id=model_id, **kw)  # type: ignore[arg-type]


_NEW = {
    "efforts": FULL_EFFORTS,
    "default_effort": "medium",
    "details": ALL_DETAILS,
    "auto_detail": "original",
    "writes_cache": True,
}
_GPT5 = {"efforts": GPT5_EFFORTS, "default_effort": "medium", "shutdown_date": "2026-12-11"}
_O4 = {
    "efforts": ("low", "medium", "high"),
    "default_effort": "medium",
    "retired": True,
    "image_multiplier": 1.72,
    "pre_gpt5": True,
    "shutdown_date": "2026-10-23",
    "verbosities": ("medium",),
}
_MINI41 = {"shutdown_date": "2027-01-14", "pre_gpt5": True, "verbosities": ("medium",)}

MODELS: dict[str, Model] = {
    m.id: m
    for m in (
        _m("gpt-6-luna", **_NEW),
        _m("gpt-5.6-luna", **_NEW),
        _m("gpt-5.6-terra", **_NEW),
        _m("gpt-5.4-mini", efforts=GPT54_EFFORTS, default_effort="none"),
        _m(
            "gpt-5.4-nano", efforts=GPT54_EFFORTS, default_effort="none", shutdown_date="2027-04-01"
        ),
        _m("gpt-4.1-mini", snapshot="gpt-4.1-mini-2025-04-14", **_MINI41),
        _m("gpt-4.1-mini-2025-04-14", **_MINI41),
        _m("gpt-5-mini", snapshot="gpt-5-mini-2025-08-07", **_GPT5),
        _m("gpt-5-mini-2025-08-07", **_GPT5),
        _m("gpt-5-nano", snapshot="gpt-5-nano-2025-08-07", **_GPT5),
        _m("gpt-5-nano-2025-08-07", **_GPT5),
        _m("o4-mini", snapshot="o4-mini-2025-04-16", **_O4),
        _m("o4-mini-2025-04-16", **_O4),
        _m(
            "gpt-4.1-nano",
            retired=True,
            shutdown_date="2026-10-23",
            image_multiplier=2.46,
            pre_gpt5=True,
            verbosities=("medium",),
        ),
    )
}


def is_served(model: Model, now: float) -> bool:
    if model.retired:
        return False
    if model.shutdown_date is None:
        return True
    today = dt.datetime.fromtimestamp(now, dt.UTC).date().isoformat()
    return today < model.shutdown_date


def lookup(model_id: str, now: float) -> Model | None:
    """The model if it exists and is still served at simulated time ``now``."""
    model = MODELS.get(model_id)
    if model is None or not is_served(model, now):
        return None
    return model


def as_json(model: Model) -> dict[str, object]:
    return {
        "id": model.id,
        "object": "model",
        "created": model.created,
        "owned_by": "system",
        "shutdown_date": model.shutdown_date,
    }
