"""Generate (or ``--check``) the checked-in OpenAPI document: ``python -m gen_status.openapi``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

PATH = Path(__file__).resolve().parent.parent / "openapi.json"
V2_SECURITY = {
    "type": "apiKey",
    "in": "header",
    "name": "X-Signature",
    "description": "v2=<hex HMAC>; with X-Client-Id, X-Key-Id, X-Timestamp, X-Nonce, "
    "X-Content-SHA256 (gen_common.request_auth)",
}


def build(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document plus the v2 signature scheme."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    schema.setdefault("components", {}).setdefault("securitySchemes", {})["v2Signature"] = (
        V2_SECURITY
    )
    app.openapi_schema = schema
    return schema


def render() -> str:
    """The document as text; building the app opens nothing (the lifespan does not run)."""
    from gen_status.app import create_app
    from gen_status.settings import StatusSettings

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
