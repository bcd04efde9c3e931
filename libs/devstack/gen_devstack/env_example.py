"""Render ``.env.example`` from the services' settings classes (``make env-example``).

A test compares the committed file with this rendering, so a new setting cannot go undocumented.
"""

from __future__ import annotations

import sys
from typing import Any

from pydantic import BaseModel, SecretStr

HEADER = """\
# Every setting of every service, as environment variables (generated: make env-example).
# Nested settings use "__": KAFKA__BOOTSTRAP_SERVERS, VISION__WORKERS, ...
# One file serves all services; each reads only its own section plus the shared ones.
"""


def _settings_classes() -> list[tuple[str, type[BaseModel]]]:
    from gen_ingest.settings import IngestSettings
    from gen_notifier.settings import NotifierSettings
    from gen_status.settings import StatusSettings
    from gen_translate.settings import TranslateSettings
    from gen_vision.settings import VisionSettings

    return [
        ("ingest", IngestSettings),
        ("status", StatusSettings),
        ("vision", VisionSettings),
        ("translate", TranslateSettings),
        ("notifier", NotifierSettings),
    ]


def _value(value: Any) -> str:
    if isinstance(value, SecretStr):
        return ""
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, list | tuple | dict):
        import json

        return json.dumps(value, default=str)
    return str(value)


def _lines(prefix: str, model: type[BaseModel], seen: set[str]) -> list[str]:
    out: list[str] = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}".upper()
        annotation = field.annotation
        if (
            isinstance(annotation, type)
            and issubclass(annotation, BaseModel)
            and not isinstance(field.default, dict)
        ):
            out.extend(_lines(f"{key}__", annotation, seen))
            continue
        if key in seen:
            continue
        seen.add(key)
        default = field.get_default(call_default_factory=True)
        doc = f"  # {field.description}" if field.description else ""
        out.append(f"# {key}={_value(default)}{doc}")
    return out


def render() -> str:
    seen: set[str] = set()
    parts = [HEADER]
    for name, cls in _settings_classes():
        parts.append(f"\n## {name}\n")
        parts.extend(line + "\n" for line in _lines("", cls, seen))
    return "".join(parts)


if __name__ == "__main__":
    sys.stdout.write(render())
