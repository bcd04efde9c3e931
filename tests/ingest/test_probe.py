"""POST /api/v1/test-image-validation: the pipeline's image checker behind a per-address limit.

Images come from a real HTTP server on 127.0.0.1 (tests/harness/images.py), allowed by the
checker's SSRF allowlist; without the allowlist the same URLs are refused before any request.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from gen_common.image_check import ImageCheckOptions
from gen_common.ssrf import SsrfSettings

from tests.harness.images import ImageHost
from tests.ingest.conftest import BASE, Ingest, MakeIngest

pytestmark = [pytest.mark.pg, pytest.mark.kafka]
PATH = "/api/v1/test-image-validation"
LOOPBACK = ImageCheckOptions(
    ssrf=SsrfSettings(allow_cidrs=["127.0.0.0/8"]), head_timeout_s=3.0, get_timeout_s=3.0
)


@pytest.fixture(scope="module")
def host() -> Iterator[ImageHost]:
    with ImageHost() as running:
        yield running


class Prober:
    """Requests from one client address of their own (the rate-limit bucket is per address)."""

    def __init__(self, ingest: Ingest) -> None:
        # fresh per run too: the GCRA state outlives the test in PostgreSQL
        self.address = "2001:db8::" + ":".join(secrets.token_hex(2) for _ in range(3))
        transport = httpx.ASGITransport(app=ingest.app, client=(self.address, 40000))
        self.client = httpx.AsyncClient(transport=transport, base_url=BASE)

    async def post(self, body: Any = None, *, raw: bytes | None = None) -> httpx.Response:
        if raw is not None:
            return await self.client.post(
                PATH, content=raw, headers={"Content-Type": "application/json"}
            )
        return await self.client.post(PATH, json=body)


@pytest.fixture
async def prober(make_ingest: MakeIngest) -> AsyncIterator[Prober]:
    ingest = await make_ingest(images=LOOPBACK, probe_rate_per_s=1000, probe_rate_burst=1000)
    result = Prober(ingest)
    yield result
    await result.client.aclose()


async def test_threshold_met_with_some_unreachable(prober: Prober, host: ImageHost) -> None:
    good = [host.ok(f"p{i}") for i in range(3)]
    bad = host.missing("p3")
    response = await prober.post({"urls": [*good, bad]})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"threshold_met": True, "unreachable_urls": [bad], "valid_urls": good}


async def test_threshold_failed_above_30_percent(prober: Prober, host: ImageHost) -> None:
    urls = [host.ok("q1"), host.ok("q2"), host.missing("q3")]  # 1 of 3 unreachable: 33 %
    response = await prober.post({"urls": urls})
    assert response.status_code == 200
    assert response.json() == {
        "threshold_met": False,
        "unreachable_urls": [urls[2]],
        "valid_urls": urls[:2],
    }


@pytest.mark.parametrize("urls", [[], ["ftp://x.example/a.jpg", "not a url"]])
async def test_none_valid_fails_the_threshold(prober: Prober, urls: list[str]) -> None:
    response = await prober.post({"urls": urls})
    assert response.status_code == 200
    assert response.json() == {"threshold_met": False, "unreachable_urls": urls, "valid_urls": []}


async def test_private_addresses_are_refused_without_a_request(
    make_ingest: MakeIngest, host: ImageHost
) -> None:
    ingest = await make_ingest(probe_rate_per_s=1000, probe_rate_burst=1000)  # default policy
    prober = Prober(ingest)
    try:
        urls = [
            host.ok("private"),
            "http://169.254.169.254/latest/meta-data/",
            "http://10.1.2.3/a.jpg",
            "http://[::1]/a.jpg",
        ]
        response = await prober.post({"urls": urls})
    finally:
        await prober.client.aclose()
    assert response.status_code == 200
    assert response.json() == {"threshold_met": False, "unreachable_urls": urls, "valid_urls": []}
    assert host.hits["/ok/private.jpg"] == 0


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"{not json", "Invalid JSON body"),
        (b"", "Invalid JSON body"),
        (b'{"urls": NaN}', "Invalid JSON body"),
        (b'{"urls": "\xff"}', "Invalid JSON body"),
        (b"null", "urls array is required"),
        (b"[]", "urls array is required"),
        (b"{}", "urls array is required"),
        (b'{"urls": "https://x.example/a.jpg"}', "urls array is required"),
        (b'{"urls": null}', "urls array is required"),
        (b'{"urls": [1, "https://x.example/a.jpg"]}', "urls must be strings"),
        (b'{"urls": [' + b'"u",' * 100 + b'"u"]}', "Too many urls: 101 > 100"),
    ],
)
async def test_bad_bodies_are_400_json(prober: Prober, raw: bytes, error: str) -> None:
    response = await prober.post(raw=raw)
    assert response.status_code == 400
    assert response.json() == {"error": error}


async def test_a_body_over_1mb_is_413(prober: Prober) -> None:
    response = await prober.post(raw=b'{"urls": ["' + b"a" * 1_100_000 + b'"]}')
    assert response.status_code == 413
    assert response.json() == {"error": "Request body too large"}


async def test_rate_limited_per_client_address(make_ingest: MakeIngest) -> None:
    ingest = await make_ingest(images=LOOPBACK, probe_rate_per_s=0.01, probe_rate_burst=2)
    first, second = Prober(ingest), Prober(ingest)
    try:
        answers = [await first.post({"urls": []}) for _ in range(3)]
        other = await second.post({"urls": []})
    finally:
        await first.client.aclose()
        await second.client.aclose()
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[2].json() == {"error": "Rate limit exceeded"}
    assert int(answers[2].headers["retry-after"]) >= 1
    assert other.status_code == 200
