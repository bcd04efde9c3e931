"""The strict schema, parsing of the model's answer, and the escaped HTML rendering."""

from __future__ import annotations

import orjson
import pytest
from gen_common.errors import InvalidModelOutput
from gen_vision import assessment


def answer(**overrides: object) -> str:
    body: dict[str, object] = {
        "overall_condition": "fair",
        "damages": [
            {
                "part": "front_left_door",
                "damage_type": "dent",
                "severity": "moderate",
                "location": "lower edge <b>near</b> the sill & trim",
                "image_indexes": [0, 2, 7, 2, -1],
            }
        ],
        "image_quality": [
            {
                "index": 1,
                "not_a_vehicle": False,
                "blurry": True,
                "too_dark": False,
                "duplicate": False,
            },
            {
                "index": 9,
                "not_a_vehicle": True,
                "blurry": False,
                "too_dark": False,
                "duplicate": False,
            },
        ],
        "narrative": ["A <script>alert(1)</script> sedan.", "  ", "Second paragraph."],
    }
    body.update(overrides)
    return orjson.dumps(body).decode()


def test_schema_is_strict_everywhere() -> None:
    def walk(node: object) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object":
                assert node["additionalProperties"] is False
                assert sorted(node["required"]) == sorted(node["properties"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(assessment.SCHEMA)


def test_parse_drops_image_indexes_outside_the_attached_images() -> None:
    parsed = assessment.parse(answer(), image_count=3)
    assert parsed.damages[0].image_indexes == [0, 2]
    assert [q.index for q in parsed.image_quality] == [1]


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        answer(overall_condition="mint"),
        answer(
            damages=[
                {
                    "part": "wing",
                    "damage_type": "dent",
                    "severity": "minor",
                    "location": "",
                    "image_indexes": [],
                }
            ]
        ),
        answer(extra=1),
        "[]",
    ],
)
def test_invalid_answers_are_invalid_model_output(text: str) -> None:
    with pytest.raises(InvalidModelOutput):
        assessment.parse(text, image_count=3)


def test_html_is_paragraphs_and_escapes_everything() -> None:
    html = assessment.render_html(assessment.parse(answer(), image_count=3))
    assert html.startswith("<p>Overall condition: fair.</p>")
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert "&lt;b&gt;near&lt;/b&gt; the sill &amp; trim" in html
    assert html.count("<p>") == html.count("</p>") == 4  # blank narrative paragraph skipped
    assert "moderate dent on the front left door" in html


def test_no_damage_is_said_explicitly() -> None:
    html = assessment.render_html(assessment.parse(answer(damages=[]), image_count=1))
    assert "<p>No visible damage was identified.</p>" in html
