"""Generate ``schemas/*.json`` from :mod:`gen_common.events`.

``python -m gen_common.schemas [DIR]`` writes the files; ``--check`` exits 1 on drift.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from gen_common.events import EVENT_TYPES, TOPIC_OF


def render() -> dict[str, str]:
    """File name -> JSON Schema text for every event type."""
    files: dict[str, str] = {}
    for type_name, model in EVENT_TYPES.items():
        schema = model.model_json_schema(mode="validation")
        schema["$id"] = f"{type_name}.v1.json"
        schema["x-topic"] = TOPIC_OF[type_name]
        files[f"{type_name}.v1.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return files


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    check = "--check" in args
    paths = [a for a in args if not a.startswith("--")]
    target = Path(paths[0]) if paths else Path("schemas")
    drift = []
    for name, text in render().items():
        path = target / name
        if check:
            if not path.exists() or path.read_text() != text:
                drift.append(name)
        else:
            path.write_text(text)
    if drift:
        sys.stderr.write(f"schemas/ drifted from gen_common.events: {', '.join(drift)}\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
