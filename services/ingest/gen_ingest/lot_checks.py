"""The lot checks of generate-descriptions (api-v1-contract.md §1.1.1 sync, §1.1.2 batch) that v2
shares: each lot's shape, its images and text, and the size estimates of the OpenAI batch input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from gen_ingest.request_body import Rejected
from gen_ingest.settings import IngestOptions

MAX_URL = 4096
MAX_INFO = 100_000
MAX_WEBHOOK = 2048
MAX_LOT_ID = 255
LINE_OVERHEAD = 400  # custom_id, method, url, model of one OpenAI batch line (estimate)
IMAGE_OVERHEAD = 40  # {"type":"input_image","image_url":...} around each URL


@dataclass(slots=True)
class Lot:
    lot_id: str | int
    images: list[str]
    additional_info: str = ""
    webhook: str | None = None


def sync_lot(raw: Any, opts: IngestOptions) -> Lot:
    """§1.1.1: a single lot, answered inline."""
    if not isinstance(raw, dict):
        raise Rejected(400, "lots[0] must be an object")
    if not raw.get("lot_id"):
        raise Rejected(400, "lot_id is required")
    images = raw.get("images")
    if not images:
        raise Rejected(400, "images array cannot be empty")
    lot = _lot(raw, 0, opts, lot_id=raw["lot_id"])
    if len(lot.images) > opts.max_sync_images:
        raise Rejected(
            400, f"Too many images for sync mode: {len(lot.images)} > {opts.max_sync_images}"
        )
    if not lot.images:  # the original: no entry with a url -> every image unreachable
        raise Rejected(
            400, "image_unreachable", message="Too many unreachable images", missing_images=[]
        )
    return lot


def batch_lots(raw_lots: list[Any], opts: IngestOptions) -> list[Lot]:
    """§1.1.2: lot count, per-line and whole-file size estimates, and each lot's shape."""
    if len(raw_lots) > opts.max_lots:
        raise Rejected(400, f"Too many lots: {len(raw_lots)} > {opts.max_lots}")
    lots = []
    for index, raw in enumerate(raw_lots):
        lots.append(batch_lot(raw, index, opts))
        raw_lots[index] = None  # the parsed dicts go as soon as their lot is taken over
    check_sizes(lots, opts)
    return lots


def batch_lot(raw: Any, index: int, opts: IngestOptions) -> Lot:
    """One lot of a batch (its shape; sizes are :func:`check_sizes`' business)."""
    if not isinstance(raw, dict):
        raise Rejected(400, f"lots[{index}] must be an object")
    return _lot(raw, index, opts, lot_id=raw.get("lot_id") or f"lot_{index}")


def check_sizes(lots: Sequence[Lot], opts: IngestOptions) -> None:
    """Per-line and whole-file estimates of the OpenAI batch input."""
    total = 0
    for index, lot in enumerate(lots):
        size = line_bytes(lot)
        if size > opts.max_line_bytes:
            raise Rejected(400, f"Lot too large: lots[{index}] ~{size} > {opts.max_line_bytes}")
        total += size
    check_total(total, opts)


def check_total(total: int, opts: IngestOptions) -> None:
    if total > opts.max_batch_file_bytes:
        raise Rejected(
            400, f"Estimated batch file too large: {float(total)} > {opts.max_batch_file_bytes}"
        )


def line_bytes(lot: Lot) -> int:
    """The estimated size of the lot's event and OpenAI batch JSONL line (escapes counted)."""
    n = len(lot.images)
    # dumps of the list = the items' dumps + (n - 1) commas + 2 brackets
    urls = len(orjson.dumps(lot.images)) - n - 1 if n else 0
    return LINE_OVERHEAD + len(orjson.dumps(lot.additional_info)) + urls + IMAGE_OVERHEAD * n


def _lot(raw: dict[str, Any], index: int, opts: IngestOptions, *, lot_id: Any) -> Lot:
    where = f"lots[{index}]"
    if isinstance(lot_id, bool) or not isinstance(lot_id, str | int):
        raise Rejected(400, f"{where}.lot_id must be a string or an integer")
    if isinstance(lot_id, str) and (len(lot_id) > MAX_LOT_ID or "\x00" in lot_id):
        raise Rejected(400, f"{where}.lot_id must be at most {MAX_LOT_ID} characters, no NUL")
    if isinstance(lot_id, int) and not -(2**63) <= lot_id < 2**63:
        raise Rejected(400, f"{where}.lot_id is out of range")
    images = raw.get("images") or []
    if not isinstance(images, list):
        raise Rejected(400, f"{where}.images must be an array")
    urls = _plain_urls(images)
    if urls is None:
        urls = _checked_urls(images, where)
    if len(urls) > opts.max_lot_images:
        raise Rejected(400, f"Too many images: {where} has {len(urls)} > {opts.max_lot_images}")
    info = raw.get("additional_info")
    if info is None:
        info = ""
    elif isinstance(info, int | float):
        info = py_str(info)
    elif not isinstance(info, str):
        raise Rejected(400, f"{where}.additional_info must be a string")
    if "\x00" in info:
        raise Rejected(400, f"{where}.additional_info must not contain NUL characters")
    if len(info) > MAX_INFO:
        raise Rejected(400, f"{where}.additional_info is longer than {MAX_INFO} characters")
    webhook = optional_url(raw.get("webhook"), f"{where}.webhook")
    return Lot(lot_id=lot_id, images=urls, additional_info=info, webhook=webhook)


def _plain_urls(images: list[Any]) -> list[str] | None:
    """The common case at C speed: every entry an object with a good url; else None."""
    try:
        urls = [entry["url"] for entry in images]
    except (TypeError, KeyError, IndexError):
        return None
    if not urls:
        return urls
    if set(map(type, urls)) != {str}:
        return None
    lengths = list(map(len, urls))
    if min(lengths) == 0 or max(lengths) > MAX_URL or "\x00" in "".join(urls):
        return None
    return urls


def _checked_urls(images: list[Any], where: str) -> list[str]:
    """Entry by entry, naming the first bad one; entries without a url key are dropped."""
    urls = []
    for j, entry in enumerate(images):
        if not isinstance(entry, dict):
            raise Rejected(400, f"{where}.images[{j}] must be an object with a url")
        if "url" not in entry:
            continue  # the original drops entries without a url key
        url = entry["url"]
        if not isinstance(url, str) or not url or len(url) > MAX_URL or "\x00" in url:
            raise Rejected(400, f"{where}.images[{j}].url must be a URL string")
        urls.append(url)
    return urls


def optional_url(value: Any, where: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_WEBHOOK or "\x00" in value:
        raise Rejected(400, f"{where} must be a URL string")
    return value


def py_str(value: Any) -> str:
    """How the original formatted a value into a message (Python ``str``)."""
    return str(value)
