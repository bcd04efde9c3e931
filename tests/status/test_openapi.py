"""The checked-in OpenAPI document matches the app (regenerate: python -m gen_status.openapi)."""

from __future__ import annotations

import json

from gen_status import openapi


def test_openapi_document_has_not_drifted() -> None:
    assert openapi.PATH.read_text() == openapi.render()


def test_every_route_is_documented() -> None:
    paths = set(json.loads(openapi.render())["paths"])
    assert {
        "/api/v1/batch-status/{job_id}",
        "/api/v1/batch-results/{job_id}",
        "/api/v1/batch-results/{job_id}/download",
        "/api/v1/batch-results/{job_id}/download.jsonl",
        "/api/v1/batch-jobs",
        "/api/v1/batch-jobs/{job_id}/cancel",
        "/api/v1/jobs/{job_id}",
        "/api/v1/jobs/{job_id}/status",
        "/health",
    } <= paths
