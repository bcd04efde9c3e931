"""The contract's request checks for generate-descriptions (api-v1-contract.md §1.1), as plain
functions over the parsed JSON: the head, the signature and the languages here, each lot's checks in
:mod:`gen_ingest.lot_checks`. Every failure is a :class:`gen_ingest.request_body.Rejected`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gen_common.signing import canonical_json, matches_hex, sign_lots

from gen_ingest.lot_checks import Lot, batch_lots, optional_url, py_str, sync_lot
from gen_ingest.request_body import Rejected
from gen_ingest.settings import IngestOptions

VERSION = "1.0.0"
REQUIRED = ("signature", "version", "languages", "lots")
MAX_LANGUAGES = 50


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


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
        raise Rejected(400, f"Unsupported version: {py_str(data['version'])}")


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
