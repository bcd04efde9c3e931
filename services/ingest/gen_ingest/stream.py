"""Large v1 bodies without several copies in memory (issue 4: a 74 MB, 50,000-lot job).

A body up to :data:`STREAM_ABOVE` bytes is kept in memory and parsed at once with orjson
(:func:`gen_ingest.validate.parse_json`). A larger one is spooled to an unnamed temporary file as
it streams in (hashed on the way for idempotency) and read back in two passes of ijson's C parser:

1. the top level (``basic_parse``, no prefixes): JSON validity, a nesting limit of
   :data:`MAX_DEPTH`, the top-level keys and their small values, the number of lots;
2. the lots (``items(..., "lots.item")``), one at a time: the v1 signature is fed lot by lot
   (``json.dumps`` of a list is ``"[" + ",".join(dumps(item)) + "]"``), each lot is checked and
   written as one compact JSON line to a second temporary file (:class:`SpooledLots`), from which
   the events are published in order.

The checks and their order are :func:`gen_ingest.validate.check_v1`'s. Shapes this path does not
reproduce exactly (the ``lots`` key twice, a top-level key ``"lots.item"``) fall back to the
in-memory parse. Numbers are parsed as floats and 64-bit integers (larger ones are invalid JSON,
as with orjson).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import hmac
import itertools
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import IO, Any, overload

import ijson  # type: ignore[import-untyped]
import orjson
from gen_common.signing import canonical_json, matches_hex, sign_lots
from starlette.requests import Request as HttpRequest

from gen_ingest.settings import IngestOptions
from gen_ingest.validate import (
    MAX_LANGUAGES,
    Lot,
    Rejected,
    Request,
    batch_lot,
    check_head,
    check_languages,
    check_total,
    check_v1,
    line_bytes,
    optional_url,
    parse_json,
    sync_lot,
)

STREAM_ABOVE = 4 * 1024 * 1024
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
class Body:
    """A received body: in memory (``data``) or spooled (``file``), with its SHA-256."""

    digest: bytes
    data: bytearray | None = None
    file: IO[bytes] | None = None


async def receive(request: HttpRequest, files: contextlib.ExitStack) -> Body:
    """Read the body once; past :data:`STREAM_ABOVE` bytes it goes to a temporary file."""
    sha = hashlib.sha256()
    buffer = bytearray()
    spool: IO[bytes] | None = None
    async for chunk in request.stream():
        sha.update(chunk)
        if spool is not None:
            spool.write(chunk)
            continue
        buffer += chunk
        if len(buffer) > STREAM_ABOVE:
            spool = files.enter_context(tempfile.TemporaryFile())  # noqa: SIM115
            spool.write(buffer)
            buffer = bytearray()
    if spool is None:
        return Body(sha.digest(), data=buffer)
    spool.flush()
    return Body(sha.digest(), file=spool)


async def check(
    body: Body, key: bytes, opts: IngestOptions, files: contextlib.ExitStack
) -> Request:
    """:func:`gen_ingest.validate.check_v1` over a received body (spooled ones in a thread)."""
    if body.file is None:
        assert body.data is not None
        data = parse_json(body.data)
        body.data = None  # one copy at a time: the bytes go before the lots are checked
        return check_v1(data, key, opts)
    out = files.enter_context(tempfile.TemporaryFile())  # noqa: SIM115
    return await asyncio.to_thread(check_spooled, body.file, out, key, opts)


@dataclass(slots=True)
class _Value:
    """A top-level value: a scalar, or a container (kind, first items, item count)."""

    scalar: Any = None
    kind: str | None = None
    items: list[Any] = field(default_factory=list)
    count: int = 0


@dataclass(slots=True)
class _Top:
    is_object: bool = False
    is_null: bool = False
    values: dict[str, _Value] = field(default_factory=dict)
    keys: dict[str, int] = field(default_factory=dict)


def _top_events(file: IO[bytes]) -> Iterator[tuple[tuple[str, Any], int]]:
    """Events at depth <= 2 with the depth after each; deeper ones are skipped in C."""
    file.seek(0)
    events, for_depth = itertools.tee(ijson.basic_parse(file, use_float=True))
    depths, for_keep = itertools.tee(
        itertools.accumulate(map(_DELTA.__getitem__, map(itemgetter(0), for_depth)))
    )
    return itertools.compress(zip(events, depths, strict=True), map(_KEEP.__getitem__, for_keep))


def _scan(file: IO[bytes]) -> _Top:
    """Pass 1: validity, depth, the top-level keys and values (lots only counted)."""
    top = _Top()
    events = _top_events(file)
    (first, _), _ = next(events)
    top.is_object = first == "start_map"
    top.is_null = first == "null"
    if not top.is_object:
        collections.deque(events, maxlen=0)  # the rest must still be valid JSON
        return top
    current: _Value | None = None
    for (event, value), depth in events:
        if depth == 1 and event == "map_key":
            top.keys[value] = top.keys.get(value, 0) + 1
            current = _Value() if value in WANTED else None
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


def _value(file: IO[bytes], name: str, value: _Value | None) -> Any:
    if value is None:
        return None
    if value.kind is None:
        return value.scalar
    if name in ("signature", "webhook_url") or (name == "lots" and value.kind == "start_array"):
        return NESTED  # containers fail those checks the same way; lots are read in pass 2
    if name == "languages" and value.kind == "start_array":
        return value.items
    return _last(file, name)


@dataclass(slots=True)
class _Lots:
    """Pass 2's findings, reported in check_v1's order once the signature is known."""

    signature: str
    first: Any = None
    shape: Rejected | None = None
    line: Rejected | None = None
    total: int = 0


def _lots(file: IO[bytes], out: IO[bytes], key: bytes, opts: IngestOptions, count: int) -> _Lots:
    """Pass 2: sign and check the lots one at a time, writing the checked ones to ``out``."""
    file.seek(0)
    mac = hmac.new(key, b"[", hashlib.sha256)
    found = _Lots(signature="")
    check = count <= opts.max_lots
    for index, raw in enumerate(ijson.items(file, "lots.item", use_float=True)):
        if index:
            mac.update(b",")
        mac.update(canonical_json(raw))
        if count == 1:
            found.first = raw
        if not check or found.shape is not None:
            continue
        try:
            lot = batch_lot(raw, index, opts)
        except Rejected as exc:
            found.shape = exc
            continue
        size = line_bytes(lot)
        found.total += size
        if size > opts.max_line_bytes and found.line is None:
            found.line = Rejected(
                400, f"Lot too large: lots[{index}] ~{size} > {opts.max_line_bytes}"
            )
        line = [lot.lot_id, lot.images, lot.additional_info, lot.webhook]
        out.write(orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE))
    mac.update(b"]")
    out.flush()
    found.signature = mac.hexdigest()
    return found


def check_spooled(file: IO[bytes], out: IO[bytes], key: bytes, opts: IngestOptions) -> Request:
    """check_v1 for a spooled body; the checked lots end up in ``out`` (:class:`SpooledLots`)."""
    try:
        top = _scan(file)
    except (ijson.JSONError, IndexError, ValueError) as exc:  # IndexError: deeper than MAX_DEPTH
        raise Rejected(400, "Invalid JSON body") from exc
    if top.is_null:
        raise Rejected(400, "Request body must be a JSON object")
    if top.keys.get("lots", 0) > 1 or "lots.item" in top.keys:
        file.seek(0)
        return check_v1(parse_json(file.read()), key, opts)
    data = {name: _value(file, name, top.values.get(name)) for name in WANTED if name in top.keys}
    check_head(data if top.is_object else None)
    lots = top.values["lots"]
    if lots.kind != "start_array":
        if not matches_hex(sign_lots(key, _value(file, "lots", lots)), data["signature"]):
            raise Rejected(403, "Invalid signature")
        raise Rejected(400, "lots must be a non-empty array")
    found = _lots(file, out, key, opts, lots.count)
    if not matches_hex(found.signature, data["signature"]):
        raise Rejected(403, "Invalid signature")
    if lots.count == 0:
        raise Rejected(400, "lots must be a non-empty array")
    languages = data["languages"]
    if not isinstance(languages, list) or not languages:
        raise Rejected(400, "languages must be a non-empty array")
    count = top.values["languages"].count
    if count > MAX_LANGUAGES:
        raise Rejected(400, f"Too many languages: {count} > {MAX_LANGUAGES}")
    languages = check_languages(languages)
    webhook_url = optional_url(data.get("webhook_url"), "webhook_url")
    if lots.count == 1:
        return Request([sync_lot(found.first, opts)], languages, webhook_url)
    if lots.count > opts.max_lots:
        raise Rejected(400, f"Too many lots: {lots.count} > {opts.max_lots}")
    for problem in (found.shape, found.line):
        if problem is not None:
            raise problem
    check_total(found.total, opts)
    return Request(SpooledLots(out, lots.count), languages, webhook_url)


class SpooledLots(Sequence[Lot]):
    """Checked lots kept one JSON line each in a temporary file, read back in order."""

    def __init__(self, file: IO[bytes], count: int) -> None:
        self._file = file
        self._count = count

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Lot]:
        self._file.seek(0)
        for line in self._file:
            lot_id, images, info, webhook = orjson.loads(line)
            yield Lot(lot_id=lot_id, images=images, additional_info=info, webhook=webhook)

    @overload
    def __getitem__(self, index: int) -> Lot: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Lot]: ...

    def __getitem__(self, index: int | slice) -> Lot | Sequence[Lot]:
        """By position; reads the whole file (for the rare caller, not the publishing path)."""
        return list(self)[index]
