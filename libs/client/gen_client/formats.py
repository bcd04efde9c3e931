"""Text formats of the CLI: results as CSV, a curl command line, a captured HTTP request."""

from __future__ import annotations

import csv
import io
import json
import shlex
from collections.abc import Mapping
from typing import Any


def results_csv(jsonl: bytes) -> str:
    """One row per lot: lot_id, status, missing_images, error_message, one column per language."""
    lots: list[dict[str, Any]] = [json.loads(line) for line in jsonl.splitlines() if line.strip()]
    languages: list[str] = []
    for lot in lots:
        for entry in lot.get("descriptions") or ():
            if entry["language"] not in languages:
                languages.append(entry["language"])
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["lot_id", "status", "missing_images", "error_message", *languages])
    for lot in lots:
        texts = {d["language"]: d["damages"] for d in lot.get("descriptions") or ()}
        writer.writerow(
            [
                lot["lot_id"],
                lot.get("status", ""),
                " ".join(lot.get("missing_images") or ()),
                lot.get("error_message") or "",
                *(texts.get(language, "") for language in languages),
            ]
        )
    return out.getvalue()


def curl(
    method: str,
    url: str,
    headers: Mapping[str, str],
    *,
    data: str | None = None,
    data_file: str | None = None,
) -> str:
    """A curl command line; the body goes verbatim (``--data-binary``), inline or ``@file``."""
    parts = ["curl", "-sS", "-X", method.upper(), shlex.quote(url)]
    for name, value in headers.items():
        parts += ["-H", shlex.quote(f"{name}: {value}")]
    if data is not None:
        parts += ["--data-binary", shlex.quote(data)]
    elif data_file is not None:
        parts += ["--data-binary", shlex.quote("@" + data_file)]
    return " ".join(parts)


def parse_captured(raw: bytes) -> tuple[dict[str, str], bytes]:
    """Headers and exact body bytes of a captured request (request line optional)."""
    for separator in (b"\r\n\r\n", b"\n\n"):
        head, found, body = raw.partition(separator)
        if found:
            break
    else:
        raise ValueError("no blank line between headers and body")
    headers: dict[str, str] = {}
    for number, line in enumerate(head.decode("latin-1").splitlines()):
        if number == 0 and " HTTP/" in line and ":" not in line.split(" ", 1)[0]:
            continue  # the request line
        name, colon, value = line.partition(":")
        if not colon:
            raise ValueError(f"not a header line: {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    return headers, body
