"""Read lots from a file: one lot (``.json`` object), a JSON array or request body, JSON Lines
(one lot per line), or CSV (columns ``lot_id``, ``images`` — URLs separated by spaces or ``|`` —,
``additional_info``, ``webhook``)."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

_SPLIT = re.compile(r"[|\s]+")


class LotFileError(ValueError):
    """The file holds no usable lots; the message says where."""


def from_csv(text: str) -> list[dict[str, Any]]:
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or not {"lot_id", "images"} <= set(reader.fieldnames):
        raise LotFileError("CSV needs the columns lot_id and images")
    lots: list[dict[str, Any]] = []
    for line, row in enumerate(reader, start=2):
        urls = [u for u in _SPLIT.split(row["images"] or "") if u]
        if not row["lot_id"] or not urls:
            raise LotFileError(f"CSV line {line}: lot_id and images must not be empty")
        lot: dict[str, Any] = {"lot_id": row["lot_id"], "images": [{"url": u} for u in urls]}
        if row.get("additional_info"):
            lot["additional_info"] = row["additional_info"]
        if row.get("webhook"):
            lot["webhook"] = row["webhook"]
        lots.append(lot)
    return lots


def from_jsonl(text: str) -> list[dict[str, Any]]:
    lots = []
    for line, raw in enumerate(text.splitlines(), start=1):
        if raw.strip():
            try:
                lots.append(json.loads(raw))
            except json.JSONDecodeError as exc:
                raise LotFileError(f"JSONL line {line}: {exc.msg}") from None
    return lots


def from_json(text: str) -> list[dict[str, Any]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LotFileError(f"invalid JSON: {exc.msg} (line {exc.lineno})") from None
    if isinstance(data, dict) and isinstance(data.get("lots"), list):
        return list(data["lots"])
    return [data] if isinstance(data, dict) else list(data) if isinstance(data, list) else []


def read_lots(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8-sig")
    suffix = path.suffix.lower()
    reader = {".csv": from_csv, ".jsonl": from_jsonl, ".ndjson": from_jsonl}.get(suffix, from_json)
    lots = reader(text)
    if not lots:
        raise LotFileError(f"{path}: no lots")
    if not all(isinstance(lot, dict) for lot in lots):
        raise LotFileError(f"{path}: every lot must be a JSON object")
    return lots


def v2_lot(lot: dict[str, Any]) -> dict[str, Any]:
    """A v1 lot (``images: [{"url": ...}]``) in the strict v2 form (``images: [url, ...]``)."""
    out = {k: v for k, v in lot.items() if v is not None}
    out["images"] = [i["url"] if isinstance(i, dict) else i for i in lot.get("images", [])]
    return out
