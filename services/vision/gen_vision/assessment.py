"""The structured assessment: the strict JSON schema the model answers in, and its HTML rendering.

Taxonomy codes (parts, damage types, severities, conditions) are language-independent; only the
narrative is prose. Image indexes refer to the images attached to the call, in order (the stored
assessment carries that ``image_urls`` list so the indexes stay interpretable).
"""

from __future__ import annotations

import html
from typing import Any, Literal

import orjson
from gen_common.errors import InvalidModelOutput
from pydantic import BaseModel, ConfigDict, Field, ValidationError

PARTS = (
    "front_bumper", "rear_bumper", "hood", "roof", "trunk_lid", "tailgate", "windshield",
    "rear_window", "side_window", "front_left_door", "front_right_door", "rear_left_door",
    "rear_right_door", "front_left_fender", "front_right_fender", "rear_left_quarter_panel",
    "rear_right_quarter_panel", "left_mirror", "right_mirror", "headlight", "taillight", "grille",
    "wheel", "tire", "rocker_panel", "undercarriage", "engine_bay", "seats", "dashboard",
    "interior_trim", "other",
)  # fmt: skip
DAMAGE_TYPES = (
    "scratch", "dent", "crack", "broken_glass", "rust", "paint_damage", "missing_part",
    "misaligned_panel", "tear", "stain", "wear", "burn", "water_damage", "deployed_airbag",
    "fluid_leak", "other",
)  # fmt: skip
SEVERITIES = ("minor", "moderate", "severe")
CONDITIONS = ("excellent", "good", "fair", "poor", "salvage")
QUALITY_FLAGS = ("not_a_vehicle", "blurry", "too_dark", "duplicate")


def _enum(values: tuple[str, ...]) -> dict[str, Any]:
    return {"type": "string", "enum": list(values)}


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": list(properties),
        "properties": properties,
    }


SCHEMA_NAME = "vehicle_assessment"
SCHEMA: dict[str, Any] = _object(
    {
        "overall_condition": _enum(CONDITIONS),
        "damages": {
            "type": "array",
            "items": _object(
                {
                    "part": _enum(PARTS),
                    "damage_type": _enum(DAMAGE_TYPES),
                    "severity": _enum(SEVERITIES),
                    "location": {"type": "string"},
                    "image_indexes": {"type": "array", "items": {"type": "integer"}},
                }
            ),
        },
        "image_quality": {
            "type": "array",
            "items": _object(
                {"index": {"type": "integer"}} | {f: {"type": "boolean"} for f in QUALITY_FLAGS}
            ),
        },
        "narrative": {"type": "array", "items": {"type": "string"}},
    }
)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Damage(_Model):
    part: Literal[PARTS]  # type: ignore[valid-type]
    damage_type: Literal[DAMAGE_TYPES]  # type: ignore[valid-type]
    severity: Literal[SEVERITIES]  # type: ignore[valid-type]
    location: str = Field(max_length=2000)
    image_indexes: list[int]


class ImageQuality(_Model):
    index: int
    not_a_vehicle: bool
    blurry: bool
    too_dark: bool
    duplicate: bool


class Assessment(_Model):
    overall_condition: Literal[CONDITIONS]  # type: ignore[valid-type]
    damages: list[Damage]
    image_quality: list[ImageQuality]
    narrative: list[str]


def parse(text: str, *, image_count: int) -> Assessment:
    """Validate the model's JSON; image indexes outside the attached images are dropped."""
    try:
        raw = Assessment.model_validate(orjson.loads(text))
    except (orjson.JSONDecodeError, ValidationError) as exc:
        raise InvalidModelOutput(f"answer does not match the schema: {exc}"[:1000]) from None
    valid = range(image_count)
    damages = [
        d.model_copy(update={"image_indexes": sorted({i for i in d.image_indexes if i in valid})})
        for d in raw.damages
    ]
    seen: set[int] = set()
    quality = []
    for q in raw.image_quality:
        if q.index in valid and q.index not in seen:
            seen.add(q.index)
            quality.append(q)
    return raw.model_copy(update={"damages": damages, "image_quality": quality})


def _words(code: str) -> str:
    return code.replace("_", " ")


def render_html(assessment: Assessment) -> str:
    """The English description: ``<p>`` paragraphs, every piece of text escaped."""
    paragraphs = [f"Overall condition: {_words(assessment.overall_condition)}."]
    paragraphs += [p.strip() for p in assessment.narrative if p.strip()]
    if assessment.damages:
        lines = []
        for d in assessment.damages:
            where = f" ({d.location.strip()})" if d.location.strip() else ""
            lines.append(f"{d.severity} {_words(d.damage_type)} on the {_words(d.part)}{where}")
        paragraphs.append("Damage: " + "; ".join(lines) + ".")
    else:
        paragraphs.append("No visible damage was identified.")
    return "".join(f"<p>{html.escape(p, quote=True)}</p>" for p in paragraphs)
