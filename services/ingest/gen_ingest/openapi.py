"""The OpenAPI document, generated from the app and checked in at services/ingest/openapi.json.

``python -m gen_ingest.openapi`` rewrites the file; ``--check`` exits 1 when it drifted.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from gen_ingest.docs import REQUEST_MODELS

FILE = Path(__file__).resolve().parents[1] / "openapi.json"
V2_SECURITY = {
    "type": "apiKey",
    "in": "header",
    "name": "X-Signature",
    "description": "v2=<hex HMAC>; with X-Client-Id, X-Key-Id, X-Timestamp, X-Nonce, "
    "X-Content-SHA256 (gen_common.request_auth)",
}


def build(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name, model in REQUEST_MODELS.items():
        generated = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(generated.pop("$defs", {}))
        schemas[name] = generated
    components.setdefault("securitySchemes", {})["v2Signature"] = V2_SECURITY
    app.openapi_schema = schema
    return schema


def render() -> str:
    from gen_ingest.app import create_app
    from gen_ingest.settings import IngestSettings

    app = create_app(IngestSettings(_env_file=None))
    return json.dumps(app.openapi(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    text = render()
    if "--check" in args:
        if not FILE.exists() or FILE.read_text() != text:
            sys.stderr.write(f"{FILE} drifted from the app; run python -m gen_ingest.openapi\n")
            return 1
        return 0
    FILE.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
