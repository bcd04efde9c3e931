"""Image checks before any model call, shared by vision and ingest's test-image-validation
(api-v1-contract §4, done as the spec meant it; Decision 11: the same SSRF guard everywhere).

Per URL: the SSRF guard (:mod:`gen_common.safe_http`: strict URL parse, resolve once, refuse
blocked ranges, connect to the checked address), ``HEAD`` within ``head_timeout_s``; on a 2xx the
``Content-Type`` must be ``image/*`` and a ``Content-Length`` at most ``max_bytes``; on any other
status a ranged ``GET`` (``Range: bytes=0-N``) within ``get_timeout_s`` must answer 200/206 with
``image/*`` (and a total size from ``Content-Range``/``Content-Length`` within the limit).
Redirects are followed by hand, each hop checked by the guard again. All images of a lot are
checked concurrently (at most ``concurrency`` per checker); the timeouts are whole-exchange
deadlines.

Threshold: a lot fails ``image_unreachable`` when no image is valid or more than
``max_unreachable`` of them are unreachable; otherwise the unreachable ones are ``missing_images``.

The checker takes any options object with the fields of :class:`ImageCheckOptions` (vision's
``ImageOptions`` has them); :class:`ImageCheckOptions` is the settings sub-model for new users.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Protocol

import httpx
from pydantic import BaseModel, ConfigDict, Field

from gen_common.errors import PermanentError, RefusedAddress
from gen_common.safe_http import SafeClient
from gen_common.ssrf import SsrfSettings, UnresolvableHost

_TOTAL = re.compile(r"/\s*(\d+)\s*$")


class ImageCheckOptions(BaseModel):
    """The checker's settings (env e.g. ``INGEST__IMAGES__SSRF__ALLOW_CIDRS='["127.0.0.0/8"]'``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    head_timeout_s: float = Field(default=3.0, gt=0)
    get_timeout_s: float = Field(default=5.0, gt=0)
    max_bytes: int = Field(default=10_000_000, ge=1)
    range_bytes: int = Field(default=32_768, ge=1, description="ranged GET fallback: bytes=0-N")
    max_unreachable: float = Field(
        default=0.3, ge=0, le=1, description="a lot fails above this share of unreachable images"
    )
    max_redirects: int = Field(default=3, ge=0, description="each hop is SSRF-checked again")
    concurrency: int = Field(default=64, ge=1, description="image checks in flight per process")
    user_agent: str = "Generation-Service/1.0.0"
    ssrf: SsrfSettings = SsrfSettings()


class CheckOptions(Protocol):
    """What :class:`ImageChecker` reads (read-only, so frozen settings models qualify)."""

    @property
    def head_timeout_s(self) -> float: ...
    @property
    def get_timeout_s(self) -> float: ...
    @property
    def max_bytes(self) -> int: ...
    @property
    def range_bytes(self) -> int: ...
    @property
    def max_redirects(self) -> int: ...
    @property
    def concurrency(self) -> int: ...
    @property
    def user_agent(self) -> str: ...


class ImagesUnreachable(PermanentError):
    """Too many images of a lot are unreachable (or none is valid)."""

    code = "image_unreachable"

    def __init__(self, missing: list[str]) -> None:
        super().__init__(f"{len(missing)} images unreachable")
        self.missing = missing


@dataclass(frozen=True, slots=True)
class ImageCheck:
    valid: list[str]
    missing: list[str]
    reasons: dict[str, str] = field(default_factory=dict)


def enforce_threshold(urls: list[str], missing: list[str], max_unreachable: float) -> None:
    """Raise :class:`ImagesUnreachable` when the lot cannot be assessed with what is left."""
    total = len(urls)
    gone = set(missing)
    bad = sum(1 for u in urls if u in gone)
    if total == 0 or bad == total or bad / total > max_unreachable:
        raise ImagesUnreachable(missing)


def _size_ok(response: httpx.Response, limit: int) -> bool:
    total = _TOTAL.search(response.headers.get("content-range", ""))
    if total:
        return int(total.group(1)) <= limit
    length = response.headers.get("content-length", "")
    if response.status_code == 200 and length.strip().isdigit():
        return int(length) <= limit
    return True


def _is_image(response: httpx.Response) -> bool:
    kind: str = response.headers.get("content-type", "")
    return kind.strip().lower().startswith("image/")


class ImageChecker:
    def __init__(self, client: SafeClient, options: CheckOptions) -> None:
        self._client = client
        self._options = options
        self._limit = asyncio.Semaphore(options.concurrency)

    async def check_lot(self, urls: list[str]) -> ImageCheck:
        unique = list(dict.fromkeys(urls))
        reasons = await asyncio.gather(*(self.check(u) for u in unique))
        by_url = dict(zip(unique, reasons, strict=True))
        valid = [u for u in unique if by_url[u] is None]
        missing = [u for u in urls if by_url[u] is not None]
        return ImageCheck(
            valid=valid,
            missing=list(dict.fromkeys(missing)),
            reasons={u: r for u, r in by_url.items() if r is not None},
        )

    async def check(self, url: str) -> str | None:
        """None when the URL serves an acceptable image, else the reason it does not."""
        async with self._limit:
            try:
                reason = await self._probe(url, "HEAD", self._options.head_timeout_s)
                if reason is not None and reason.startswith("status "):
                    reason = await self._probe(url, "GET", self._options.get_timeout_s)
            except RefusedAddress as exc:  # also InvalidUrl
                return f"refused: {exc}"
            except UnresolvableHost as exc:
                return f"unresolvable: {exc}"
            except TimeoutError:
                return "timeout"
            except httpx.HTTPError as exc:
                return f"fetch failed: {type(exc).__name__}"
            return reason

    async def _drain(self, method: str, response: httpx.Response) -> None:
        """Read a small body so the keep-alive connection can be reused (httpx closes a
        connection whose body was not consumed); a large or unknown-length body is not read."""
        length = response.headers.get("content-length", "")
        small = length.strip().isdigit() and int(length) <= self._options.range_bytes + 1
        if method == "HEAD" or response.status_code == 304 or small:
            await response.aread()

    async def _probe(self, url: str, method: str, timeout_s: float) -> str | None:
        o = self._options
        headers = {"User-Agent": o.user_agent, "Accept": "image/*"}
        if method == "GET":
            headers["Range"] = f"bytes=0-{o.range_bytes}"
        async with asyncio.timeout(timeout_s):
            for _ in range(o.max_redirects + 1):
                async with self._client.stream(
                    method, url, headers=headers, request_timeout=timeout_s
                ) as (target, response):
                    await self._drain(method, response)
                    status = response.status_code
                    location = response.headers.get("location")
                    if 300 <= status < 400 and location:
                        url = str(target.url.join(location))
                        continue
                    if not 200 <= status < 300:
                        return f"status {status}"
                    if not _is_image(response):
                        return "not an image"
                    if not _size_ok(response, o.max_bytes):
                        return "too large"
                    return None
        return "too many redirects"
