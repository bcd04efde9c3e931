"""Pass 2 over a spooled v1 body (:mod:`gen_ingest.stream`) and the verdict: the lots signed and
checked one at a time, written as compact JSON lines to a second temporary file
(:class:`SpooledLots`), from which the events are published in order; then
:func:`gen_ingest.validate.check_v1`'s checks in its order."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any, overload

import ijson  # type: ignore[import-untyped]
import orjson
from gen_common.signing import canonical_json, matches_hex, sign_lots

from gen_ingest.lot_checks import Lot, batch_lot, check_total, line_bytes, optional_url, sync_lot
from gen_ingest.request_body import Rejected, parse_json
from gen_ingest.settings import IngestOptions
from gen_ingest.spool_scan import WANTED, scan, value_of
from gen_ingest.validate import MAX_LANGUAGES, Request, check_head, check_languages, check_v1


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
        top = scan(file)
    except (ijson.JSONError, IndexError, ValueError) as exc:  # IndexError: deeper than MAX_DEPTH
        raise Rejected(400, "Invalid JSON body") from exc
    if top.is_null:
        raise Rejected(400, "Request body must be a JSON object")
    if top.keys.get("lots", 0) > 1 or "lots.item" in top.keys:
        file.seek(0)
        return check_v1(parse_json(file.read()), key, opts)
    data = {name: value_of(file, name, top.values.get(name)) for name in WANTED if name in top.keys}
    check_head(data if top.is_object else None)
    lots = top.values["lots"]
    if lots.kind != "start_array":
        if not matches_hex(sign_lots(key, value_of(file, "lots", lots)), data["signature"]):
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
