"""Generated files checked into the repository: write them, or (``--check``) detect drift."""

from __future__ import annotations

import sys
from pathlib import Path


def write_or_check(path: Path, text: str, *, check: bool, regenerate: str) -> int:
    """Write ``text`` to ``path``, or with ``check`` return 1 if the file differs; 0 otherwise."""
    if not check:
        path.write_text(text)
        return 0
    if path.exists() and path.read_text() == text:
        return 0
    sys.stderr.write(f"{path} drifted from its source; run {regenerate}\n")
    return 1
