"""Image checks against a real HTTP server on 127.0.0.1 through the SSRF-pinned client."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from gen_common.image_check import ImageCheckOptions
from gen_common.safe_http import SafeClient
from gen_common.ssrf import SsrfSettings
from gen_vision.images import ImageChecker, ImagesUnreachable, enforce_threshold

from .conftest import LOOPBACK, ImageHost


@pytest.fixture
async def checker() -> AsyncIterator[ImageChecker]:
    options = ImageCheckOptions(ssrf=LOOPBACK, head_timeout_s=0.5, get_timeout_s=0.5)
    async with SafeClient(options.ssrf) as client:
        yield ImageChecker(client, options)


async def test_each_outcome(checker: ImageChecker, image_host: ImageHost) -> None:
    cases = {
        "img/1.jpg": None,
        "nohead/2.jpg": None,  # HEAD 405 -> ranged GET 206
        "redirect/3.jpg": None,  # followed by hand, re-checked
        "missing/4.jpg": "status 404",
        "html/5.jpg": "not an image",
        "huge/6.jpg": "too large",
        "slow/7.jpg": "timeout",
    }
    for path, expected in cases.items():
        assert await checker.check(image_host.url(path)) == expected, path


@pytest.mark.parametrize(
    "url", ["ftp://example.com/a.jpg", "not a url", "http://user:pw@example.com/a.jpg", ""]
)
async def test_bad_url_format_is_unreachable(checker: ImageChecker, url: str) -> None:
    reason = await checker.check(url)
    assert reason is not None
    assert reason.startswith("refused")


async def test_loopback_refused_without_allowlist(image_host: ImageHost) -> None:
    options = ImageCheckOptions(ssrf=SsrfSettings())
    async with SafeClient(options.ssrf) as client:
        reason = await ImageChecker(client, options).check(image_host.url("img/1.jpg"))
    assert reason is not None
    assert reason.startswith("refused")


async def test_a_lot_is_checked_concurrently(checker: ImageChecker, image_host: ImageHost) -> None:
    urls = [image_host.url(f"slow/{i}.jpg") for i in range(6)] + [image_host.url("img/ok.jpg")]
    started = time.monotonic()
    result = await checker.check_lot(urls)
    elapsed = time.monotonic() - started
    assert elapsed < 2.0  # six 0.5 s timeouts in parallel (HEAD then GET), not 6 s in a row
    assert result.valid == [image_host.url("img/ok.jpg")]
    assert result.missing == urls[:6]


async def test_duplicates_are_checked_once_and_kept_in_order(
    checker: ImageChecker, image_host: ImageHost
) -> None:
    a, b = image_host.url("img/a.jpg"), image_host.url("missing/b.jpg")
    result = await checker.check_lot([a, b, a, b])
    assert result.valid == [a]
    assert result.missing == [b]


@pytest.mark.parametrize(
    ("total", "bad", "fails"),
    [(10, 3, False), (10, 4, True), (3, 1, True), (1, 0, False), (1, 1, True), (0, 0, True)],
)
def test_threshold_more_than_30_percent_or_none_valid(total: int, bad: int, fails: bool) -> None:
    urls = [f"https://h/{i}.jpg" for i in range(total)]
    if fails:
        with pytest.raises(ImagesUnreachable) as info:
            enforce_threshold(urls, urls[:bad], 0.3)
        assert info.value.missing == urls[:bad]
    else:
        enforce_threshold(urls, urls[:bad], 0.3)
