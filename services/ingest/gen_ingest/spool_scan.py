"""Pass 1 over a spooled v1 body (:mod:`gen_ingest.stream`): JSON validity, a nesting limit of
:data:`MAX_DEPTH`, the top-level keys and their small values, the number of lots — with ijson's C
parser, events deeper than the top level skipped without building them."""

from __future__ import annotations

import collections
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from operator import itemgetter
from typing import IO, Any

import ijson  # type: ignore[import-untyped]

from gen_ingest.validate import MAX_LANGUAGES

MAX_DEPTH = 64
WANTED = ("signature", "version", "languages", "webhook_url", "lots")
_DELTA = {
    "start_map": 1,
    "start_array": 1,
    "end_map": -1,
    "end_array": -1,
    "map_key": 0,
    "string": 0,
    "number": 0,
    "boolean": 0,
    "null": 0,
}
# Indexed by the depth after an event: keep depths 0-2, drop 3..MAX_DEPTH, IndexError beyond.
_KEEP = (True, True, True) + (False,) * (MAX_DEPTH - 2)
_ENDS = ("end_map", "end_array")
_STARTS = ("start_map", "start_array")


class Nested:
    """Stands for a value that is a container (never equal to a string, never a URL)."""


NESTED = Nested()


@dataclass(slots=True)
class Value:
    """A top-level value: a scalar, or a container (kind, first items, item count)."""

    scalar: Any = None
    kind: str | None = None
    items: list[Any] = field(default_factory=list)
    count: int = 0


@dataclass(slots=True)
class Top:
    is_object: bool = False
    is_null: bool = False
    values: dict[str, Value] = field(default_factory=dict)
    keys: dict[str, int] = field(default_factory=dict)


def _top_events(file: IO[bytes]) -> Iterator[tuple[tuple[str, Any], int]]:
    """Events at depth <= 2 with the depth after each; deeper ones are skipped in C."""
    file.seek(0)
    events, for_depth = itertools.tee(ijson.basic_parse(file, use_float=True))
    depths, for_keep = itertools.tee(
        itertools.accumulate(map(_DELTA.__getitem__, map(itemgetter(0), for_depth)))
    )
    return itertools.compress(zip(events, depths, strict=True), map(_KEEP.__getitem__, for_keep))


def scan(file: IO[bytes]) -> Top:
    """Pass 1: validity, depth, the top-level keys and values (lots only counted)."""
    top = Top()
    events = _top_events(file)
    (first, _), _ = next(events)
    top.is_object = first == "start_map"
    top.is_null = first == "null"
    if not top.is_object:
        collections.deque(events, maxlen=0)  # the rest must still be valid JSON
        return top
    current: Value | None = None
    for (event, value), depth in events:
        if depth == 1 and event == "map_key":
            top.keys[value] = top.keys.get(value, 0) + 1
            current = Value() if value in WANTED else None
            if current is not None:
                top.values[value] = current
        elif current is None or depth == 0 or (depth == 1 and event in _ENDS):
            continue
        elif depth == 1:
            current.scalar = value
        elif event in _STARTS:  # depth 2: the top-level value is a container
            current.kind = event
        elif event != "map_key":  # an item of that container (or a nested one just closed)
            current.count += 1
            if current.count <= MAX_LANGUAGES + 1:
                current.items.append(NESTED if event in _ENDS else value)
    return top


def _last(file: IO[bytes], prefix: str) -> Any:
    """The last value at ``prefix`` (a top-level key given twice: the last one wins)."""
    file.seek(0)
    found: Any = None
    for found in ijson.items(file, prefix, use_float=True):  # noqa: B007
        pass
    return found


def value_of(file: IO[bytes], name: str, value: Value | None) -> Any:
    if value is None:
        return None
    if value.kind is None:
        return value.scalar
    if name in ("signature", "webhook_url") or (name == "lots" and value.kind == "start_array"):
        return NESTED  # containers fail those checks the same way; lots are read in pass 2
    if name == "languages" and value.kind == "start_array":
        return value.items
    return _last(file, name)
