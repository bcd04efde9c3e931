"""Descriptions produced against the OpenAI simulator say so ("simulated": true)."""

from __future__ import annotations

import uuid
from typing import Any, cast

import asyncpg
from gen_translate import finish


def _lot(assessment: dict[str, Any]) -> asyncpg.Record:
    row = {
        "job_id": uuid.uuid4(),
        "lot_seq": 0,
        "lot_id": "A1",
        "languages": ["ru"],
        "description_en": "<p>Dent.</p>",
        "assessment": assessment,
        "missing_images": [],
    }
    return cast(asyncpg.Record, row)


def _ru() -> list[asyncpg.Record]:
    row = {
        "language": "ru",
        "outcome": "translated",
        "text": "<p>[ru] Dent.</p>",
        "input_tokens": 1,
        "cached_tokens": 0,
        "output_tokens": 1,
        "reasoning_tokens": 0,
        "cost_usd": 0,
    }
    return [cast(asyncpg.Record, row)]


def test_every_description_is_marked_when_the_assessment_was_simulated() -> None:
    event = finish.build_event(_lot({"simulated": True, "damages": []}), _ru())
    dumped = [d.model_dump(exclude_none=True) for d in event.descriptions]
    assert [d["language"] for d in dumped] == ["en", "ru"]
    assert all(d["simulated"] is True for d in dumped)


def test_real_output_carries_no_marker_on_the_wire() -> None:
    event = finish.build_event(_lot({"damages": []}), _ru())
    dumped = [d.model_dump(exclude_none=True) for d in event.descriptions]
    assert dumped == [
        {"language": "en", "damages": "<p>Dent.</p>"},
        {"language": "ru", "damages": "<p>[ru] Dent.</p>"},
    ]
