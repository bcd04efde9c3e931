"""A Responses API answer read from its raw JSON body (:func:`answer_of`), without the SDK's
pydantic parse; vision and translate read their answers with it.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import orjson

_ANSWER_FIELDS = ("id", "model", "status", "incomplete_details", "usage", "error", "output")


def _attrs(value: Any) -> Any:
    if isinstance(value, dict):
        return SimpleNamespace(**{k: _attrs(v) for k, v in value.items()})
    if isinstance(value, list):
        return [_attrs(v) for v in value]
    return value


def answer_of(body: bytes) -> Any:
    """A Responses API answer read from its JSON body, with the attribute access of the SDK's
    ``Response`` for the fields the stages read (``id``, ``model``, ``status``, ``output`` items
    and their ``content`` parts, ``incomplete_details``, ``usage``) and ``output_text``; the
    body's other fields are not read.

    It replaces ``raw.parse()``, whose pydantic model construction cost ~0.7 ms of CPU per call
    (measured against the simulator); missing fields read as None. A body that is not a JSON
    object raises ``ValueError`` (as the SDK's parse does; :func:`gen_common.llm.classify` makes it
    :class:`InvalidModelOutput`).
    """
    data = orjson.loads(body)
    if not isinstance(data, dict):
        raise ValueError("the answer is not a JSON object")
    # Only the fields read: the rest (the echoed request, its JSON schema included) is most of the
    # body, and making attributes of it cost vision ~0.5 ms per call.
    answer = SimpleNamespace(**{name: _attrs(data.get(name)) for name in _ANSWER_FIELDS})
    answer.output = answer.output if isinstance(getattr(answer, "output", None), list) else []
    answer.output_text = "".join(
        part.text
        for item in answer.output
        if getattr(item, "type", None) == "message"
        for part in getattr(item, "content", None) or ()
        if getattr(part, "type", None) == "output_text" and isinstance(part.text, str)
    )
    return answer
