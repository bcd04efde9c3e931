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
from gen_common.generated import write_or_check
from gen_common.request_auth import OPENAPI_SECURITY_SCHEME

from gen_ingest.docs import REQUEST_MODELS

FILE = Path(__file__).resolve().parents[1] / "openapi.json"


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
    components.setdefault("securitySchemes", {})["v2Signature"] = OPENAPI_SECURITY_SCHEME
    app.openapi_schema = schema
    return schema


def render() -> str:
    from gen_ingest.app import create_app
    from gen_ingest.settings import IngestSettings

    app = create_app(IngestSettings(_env_file=None))
    return json.dumps(app.openapi(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    return write_or_check(
        FILE, render(), check="--check" in args, regenerate="python -m gen_ingest.openapi"
    )


if __name__ == "__main__":
    raise SystemExit(main())
