"""The contract's request checks for generate-descriptions (api-v1-contract.md §1.1) and the lot
checks v2 shares, as plain functions over the parsed JSON.

Every failure is a :class:`Rejected` carrying the status and the ``{"error": ...}`` body, so a
lot or image entry of the wrong type is a 400, never a 500.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from gen_common.signing import canonical_json, matches_hex, sign_lots

from gen_ingest.settings import IngestOptions

VERSION = "1.0.0"
REQUIRED = ("signature", "version", "languages", "lots")
MAX_URL = 4096
MAX_INFO = 100_000
MAX_WEBHOOK = 2048
MAX_LOT_ID = 255
MAX_LANGUAGES = 50
LINE_OVERHEAD = 400  # custom_id, method, url, model of one OpenAI batch line (estimate)
IMAGE_OVERHEAD = 40  # {"type":"input_image","image_url":...} around each URL


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Rejected(Exception):
    def __init__(self, status: int, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.status = status
        self.body: dict[str, Any] = {"error": error, **extra}


@dataclass(slots=True)
class Lot:
    lot_id: str | int
    images: list[str]
    additional_info: str = ""
    webhook: str | None = None


@dataclass(slots=True)
class Request:
    lots: Sequence[Lot]  # a list, or gen_ingest.spooled.SpooledLots for a large body
    languages: list[str]
    webhook_url: str | None = None
    warnings: list[str] = field(default_factory=list)


def check_v1(data: Any, key: bytes, opts: IngestOptions) -> Request:
    """Steps c-i of the validation-order table, then the sync or batch lot checks."""
    check_head(data)
    try:
        expected = lots_signature(key, data["lots"])
    except (RecursionError, ValueError) as exc:
        raise Rejected(400, "Request JSON nested too deeply") from exc
    if not matches_hex(expected, data["signature"]):
        raise Rejected(403, "Invalid signature")
    lots, languages = data["lots"], data["languages"]
    if not isinstance(lots, list) or not lots:
        raise Rejected(400, "lots must be a non-empty array")
    if not isinstance(languages, list) or not languages:
        raise Rejected(400, "languages must be a non-empty array")
    languages = check_languages(languages)
    webhook_url = optional_url(data.get("webhook_url"), "webhook_url")
    if len(lots) == 1:
        return Request([sync_lot(lots[0], opts)], languages, webhook_url)
    return Request(batch_lots(lots, opts), languages, webhook_url)


def check_head(data: Any) -> None:
    """Steps c and d: an object with every required field, and the one supported version."""
    if not isinstance(data, dict):
        raise Rejected(400, "Missing required field: signature")
    for name in REQUIRED:
        if name not in data:
            raise Rejected(400, f"Missing required field: {name}")
    if data["version"] != VERSION:
        raise Rejected(400, f"Unsupported version: {_py_str(data['version'])}")


def lots_signature(key: bytes, lots: Any) -> str:
    """``sign_lots`` computed lot by lot, so the canonical text of a large job is never whole.

    The canonical JSON of a list is ``"[" + ",".join(canonical(item)) + "]"``, so feeding the
    HMAC item by item gives exactly gen_common.signing.sign_lots(key, lots).
    """
    if not isinstance(lots, list):
        return sign_lots(key, lots)
    mac = hmac.new(key, b"[", hashlib.sha256)
    for index, item in enumerate(lots):
        if index:
            mac.update(b",")
        mac.update(canonical_json(item))
    mac.update(b"]")
    return mac.hexdigest()


def check_languages(languages: list[Any]) -> list[str]:
    if len(languages) > MAX_LANGUAGES:
        raise Rejected(400, f"Too many languages: {len(languages)} > {MAX_LANGUAGES}")
    for code in languages:
        if not isinstance(code, str) or not 1 <= len(code) <= 35 or _CONTROL.search(code):
            raise Rejected(400, "languages must be language codes (strings of 1-35 characters)")
    return languages


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
        info = _py_str(info)
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


def _py_str(value: Any) -> str:
    """How the original formatted a value into a message (Python ``str``)."""
    return str(value)


def parse_json(body: bytes | bytearray) -> Any:
    """Parse once with orjson (strict UTF-8, no NaN/Infinity, depth <= 1024); null is refused."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Rejected(400, "Invalid JSON body") from exc
    if data is None:
        raise Rejected(400, "Request body must be a JSON object")
    return data


def is_json(content_type: str | None) -> bool:
    """Flask's ``is_json``: application/json or application/*+json, parameters ignored."""
    mimetype = (content_type or "").split(";", 1)[0].strip().lower()
    return mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    )
