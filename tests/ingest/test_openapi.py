"""services/ingest/openapi.json is generated from the app; any drift fails."""

from __future__ import annotations

import json

from gen_ingest import openapi


def test_checked_in_openapi_matches_the_app() -> None:
    assert openapi.main(["--check"]) == 0, "run: uv run python -m gen_ingest.openapi"


def test_the_document_lists_the_ingest_operations() -> None:
    paths = json.loads(openapi.FILE.read_text())["paths"]
    assert set(paths) == {
        "/health",
        "/api/v1/generate-descriptions",
        "/api/v1/test-image-validation",
        "/api/v2/jobs",
    }
    assert set(paths["/api/v1/generate-descriptions"]["post"]["responses"]) >= {
        "200",
        "201",
        "400",
        "403",
        "413",
        "429",
        "503",
    }
