"""The Responses API exchange of one lot: what is sent (:class:`LotRequest` -> :func:`body`) and
what its answer becomes (:func:`result_of` -> :class:`ModelResult`). Shared by the realtime
assessor and the Batch API path, which sends the same body and reads the same answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gen_common.errors import InvalidModelOutput
from gen_common.events import TokenUsage

from gen_vision import assessment
from gen_vision.settings import VisionOptions


@dataclass(slots=True)
class LotRequest:
    """One lot to assess; ``refused`` collects images OpenAI could not download (kept on retry)."""

    job_id: str
    lot_seq: int
    lot_id: str | int
    all_images: list[str]
    images: list[str]  # valid after our checks, minus refused ones
    missing: list[str]  # unreachable by our checks
    additional_info: str = ""
    refused: list[str] = field(default_factory=list)

    @property
    def missing_images(self) -> list[str]:
        return list(dict.fromkeys([*self.missing, *self.refused]))


@dataclass(frozen=True, slots=True)
class ModelResult:
    assessment: dict[str, Any]
    html: str
    model: str
    response_id: str
    usage: TokenUsage
    images: list[str]


def body(lot: LotRequest, o: VisionOptions, prompt: str) -> dict[str, Any]:
    """The Responses API request of ``lot``: every image attached, the strict schema."""
    text = (
        f"Vehicle lot {lot.lot_id}. {len(lot.images)} photos are attached, indexed 0 to "
        f"{len(lot.images) - 1} in order."
    )
    if lot.additional_info.strip():
        text += (
            "\n\nAdditional context from the seller (information only):\n<<<\n"
            f"{lot.additional_info.strip()}\n>>>"
        )
    content: list[dict[str, Any]] = [{"type": "input_text", "text": text}]
    content += [{"type": "input_image", "image_url": u, "detail": o.detail} for u in lot.images]
    request: dict[str, Any] = {
        "model": o.model,
        "instructions": prompt,
        "input": [{"role": "user", "content": content}],
        "text": {
            "format": {
                "type": "json_schema",
                "name": assessment.SCHEMA_NAME,
                "strict": True,
                "schema": assessment.SCHEMA,
            }
        },
        "max_output_tokens": o.max_output_tokens,
        "prompt_cache_key": o.prompt_cache_key,
        "metadata": {"job_id": lot.job_id, "lot_seq": str(lot.lot_seq)},
        "store": False,
    }
    if o.reasoning_effort is not None:
        request["reasoning"] = {"effort": o.reasoning_effort}
    return request


def result_of(response: Any, lot: LotRequest, usage: TokenUsage) -> ModelResult:
    """The answer read against the strict schema (InvalidModelOutput if it is not one);
    ``usage`` as the caller priced it."""
    if response.status != "completed":
        details = getattr(response, "incomplete_details", None)
        raise InvalidModelOutput(f"response {response.status}: {details}")
    for item in response.output:
        for part in getattr(item, "content", None) or ():
            if getattr(part, "type", None) == "refusal":
                raise InvalidModelOutput(f"refusal: {part.refusal}"[:500])
    text = response.output_text
    if not text.strip():
        raise InvalidModelOutput("empty answer")
    parsed = assessment.parse(text, image_count=len(lot.images))
    stored = parsed.model_dump(mode="json") | {"image_urls": list(lot.images)}
    return ModelResult(
        assessment=stored,
        html=assessment.render_html(parsed),
        model=str(response.model),
        response_id=str(response.id),
        usage=usage,
        images=list(lot.images),
    )


def usage_of(response: Any) -> TokenUsage:
    u = getattr(response, "usage", None)
    if u is None:
        return TokenUsage()
    cached = getattr(getattr(u, "input_tokens_details", None), "cached_tokens", 0) or 0
    reasoning = getattr(getattr(u, "output_tokens_details", None), "reasoning_tokens", 0) or 0
    return TokenUsage(
        input_tokens=u.input_tokens,
        cached_tokens=cached,
        output_tokens=u.output_tokens,
        reasoning_tokens=reasoning,
    )
