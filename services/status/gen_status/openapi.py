"""Generate (or ``--check``) the checked-in OpenAPI document: ``python -m gen_status.openapi``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from gen_common.generated import write_or_check
from gen_common.request_auth import OPENAPI_SECURITY_SCHEME

PATH = Path(__file__).resolve().parent.parent / "openapi.json"


def build(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document plus the v2 signature scheme."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
    schemes["v2Signature"] = OPENAPI_SECURITY_SCHEME
    app.openapi_schema = schema
    return schema


def render() -> str:
    """The document as text; building the app opens nothing (the lifespan does not run)."""
    from gen_status.app import create_app
    from gen_status.settings import StatusSettings

    app = create_app(StatusSettings(env="test"))
    return json.dumps(app.openapi(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    return write_or_check(
        PATH, render(), check="--check" in argv, regenerate="python -m gen_status.openapi"
    )


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
