"""A test's measured figures: kept as ``report.json`` in its tmp_path and shown on the terminal
past pytest's capture as ``[tag] {...}`` (the figures the issues ask for)."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def report(tmp_path: Path, tag: str, figures: Mapping[str, Any]) -> None:
    text = json.dumps(figures, default=str)
    (tmp_path / "report.json").write_text(text)
    if sys.__stderr__ is not None:
        sys.__stderr__.write(f"\n[{tag}] {text}\n")
