"""Generate (or ``--check``) the checked-in OpenAPI document: ``python -m gen_status.openapi``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from gen_status.app import create_app
from gen_status.settings import StatusSettings

PATH = Path(__file__).resolve().parent.parent / "openapi.json"


def render() -> str:
    """The document as text; building the app opens nothing (the lifespan does not run)."""
    app = create_app(StatusSettings(env="test"))
    return json.dumps(app.openapi(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not PATH.exists() or PATH.read_text() != text:
            sys.stderr.write(f"{PATH} is stale: run python -m gen_status.openapi\n")
            return 1
        return 0
    PATH.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
