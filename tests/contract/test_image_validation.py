"""api-v1-contract.md §1.9 with Decision 11: POST /api/v1/test-image-validation keeps its shapes
(no auth), answers invalid JSON with a 400 JSON error instead of a 500, and goes through the
pipeline's SSRF guard (a loopback image is unreachable under the default policy)."""

from __future__ import annotations

import pytest

from tests.harness.images import ImageHost
from tests.ingest.conftest import MakeIngest
from tests.ingest.test_probe import LOOPBACK, Prober

pytestmark = [pytest.mark.pg, pytest.mark.kafka]


async def test_shapes_of_the_original(make_ingest: MakeIngest) -> None:
    with ImageHost() as host:
        allowed = Prober(await make_ingest(images=LOOPBACK))
        default = Prober(await make_ingest())
        try:
            ok = await allowed.post({"urls": [host.ok("c1"), host.ok("c2")]})
            guarded = await default.post({"urls": [host.ok("c3")]})
            missing = await allowed.post({"not_urls": []})
            invalid = await allowed.post(raw=b"{")
        finally:
            await allowed.client.aclose()
            await default.client.aclose()
    assert ok.status_code == 200
    valid = f'["{host.ok("c1")}","{host.ok("c2")}"]'
    assert ok.text == '{"threshold_met":true,"unreachable_urls":[],"valid_urls":' + valid + "}\n"
    assert guarded.status_code == 200
    assert guarded.json() == {
        "threshold_met": False,
        "unreachable_urls": [host.ok("c3")],
        "valid_urls": [],
    }
    assert host.hits["/ok/c3.jpg"] == 0
    assert (missing.status_code, missing.json()) == (400, {"error": "urls array is required"})
    assert invalid.status_code == 400
    assert invalid.headers["content-type"] == "application/json"
    assert set(invalid.json()) == {"error"}
