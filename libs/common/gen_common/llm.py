"""OpenAI plumbing shared by vision and translate: the client, error sorting, rate-limit headers.

- :func:`client` builds ``AsyncOpenAI`` with an explicit timeout and a small ``max_retries``. The
  SDK (v3) runs on ``httpx2``: its timeout type is ``openai.Timeout`` (= ``httpx2.Timeout``), not
  ``httpx.Timeout``, so that is what we pass.
- :func:`classify` sorts SDK exceptions into :mod:`gen_common.errors`:

  ============================================  ==============================================
  429 ``rate_limit_exceeded`` (or no code)      :class:`RateLimited` with ``retry_after``
  429 ``insufficient_quota``                    :class:`QuotaExhausted` — retryable with a long
                                                delay and a *breaker failure*: quota comes back
                                                only when a human pays, so the process should
                                                stop calling (breaker opens) but no lot should
                                                fail for it while it still has attempts
  5xx, 408, 409, timeouts, connection errors    :class:`UpstreamUnavailable`
  400 naming an image download problem          :class:`ImageDownloadFailed` carrying the URL
                                                (openai-reference §5.5): resend without it
  body that fails the SDK's parsing             :class:`InvalidModelOutput`
  any other 4xx                                 :class:`PermanentError`
  ============================================  ==============================================

- :func:`parse_duration` / :func:`parse_ratelimit` read the ``x-ratelimit-*`` headers (Go
  durations such as ``6m0s``, ``1h2m3.5s``, ``12ms``); junk yields ``None``, nothing ever raises.
- :class:`Throttle` paces calls from those values: an AIMD concurrency window (+1 after every
  ``increase_every`` successes, halved on a 429 or timeout), a pause for ``retry-after`` after a
  429, and a minimum spacing of ``60 s / limit`` between call starts once the remaining requests
  (or tokens) run low, so the sustained rate converges to the limit instead of bursting into 429s.

Retries: the SDK retries at most ``max_retries`` (default 1) times on its own. Our retries of a
lot happen in the caller: :func:`retry_delay` gives a jittered exponential delay per error class
(honouring a server ``retry_after``); callers either wait it in-process (tenacity) or store it as
the work row's ``next_attempt_at``, which survives a crash and is visible in SQL.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import logging
import math
import random
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass

import openai
from pydantic import BaseModel, ConfigDict, Field

from gen_common.errors import (
    GenError,
    InvalidModelOutput,
    PermanentError,
    RateLimited,
    RetryableError,
    UpstreamUnavailable,
)
from gen_common.settings import OpenAISettings

log = logging.getLogger(__name__)
MAX_SLEEP_S = 120.0
IMAGE_CODES = frozenset(
    {"invalid_image_url", "failed_to_download_image", "image_file_not_found", "invalid_image"}
)
_URL_IN_MESSAGE = re.compile(r"(?:downloading|download)\s+(\S+?)\.?(?:\s|$)", re.I)
_GO_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}
_GO_UNITS["h"] = 3600.0


class QuotaExhausted(RetryableError):
    """429 ``insufficient_quota``: not transient within seconds; trips the breaker."""

    code = "insufficient_quota"
    breaker_failure = True

    def __init__(self, message: str = "", *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ImageDownloadFailed(PermanentError):
    """OpenAI could not fetch one image; the request as sent cannot succeed, without it it may."""

    code = "image_download_failed"

    def __init__(self, message: str = "", *, url: str | None = None) -> None:
        super().__init__(message)
        self.url = url


def client(settings: OpenAISettings) -> openai.AsyncOpenAI:
    """The SDK client with an explicit timeout (read/write/pool and connect) and max_retries."""
    return openai.AsyncOpenAI(
        api_key=settings.api_key.get_secret_value() or "sk-unset",
        base_url=settings.base_url,
        timeout=openai.Timeout(settings.timeout_s, connect=settings.connect_timeout_s),
        max_retries=settings.max_retries,
    )


# -- header parsing (never raises) ---------------------------------------------------------------
def parse_duration(value: str | None) -> float | None:
    """A Go duration (``6m0s``, ``1h2m3.5s``, ``12ms``, ``0s``) or plain seconds, else None."""
    if value is None:
        return None
    text = value.strip()
    if not text or len(text) > 64:
        return None
    try:
        plain = float(text)
    except ValueError:
        plain = None
    if plain is not None:
        return plain if math.isfinite(plain) and plain >= 0 else None
    pos, total = 0, 0.0
    for match in _GO_PART.finditer(text):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _GO_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or pos == 0 or not math.isfinite(total):
        return None
    return total


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        number = int(value.strip())
    except ValueError:
        return None
    return number if 0 <= number < 10**15 else None


def clamp_sleep(seconds: float | None) -> float:
    if seconds is None or not math.isfinite(seconds):
        return 0.0
    return min(max(seconds, 0.0), MAX_SLEEP_S)


def retry_after(headers: Mapping[str, str]) -> float | None:
    """``retry-after-ms``, else ``retry-after`` (seconds or an HTTP date); clamped, or None."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            value = float(ms) / 1000.0
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value >= 0:
            return clamp_sleep(value)
    raw = headers.get("retry-after")
    if raw is None:
        return None
    seconds = parse_duration(raw)
    if seconds is None:
        try:
            date = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if date is None or date.tzinfo is None:
            return None
        seconds = date.timestamp() - time.time()
    return clamp_sleep(seconds)


@dataclass(frozen=True, slots=True)
class RateLimitInfo:
    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests_s: float | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens_s: float | None = None


def parse_ratelimit(headers: Mapping[str, str]) -> RateLimitInfo:
    def dur(name: str) -> float | None:
        value = parse_duration(headers.get(name))
        return None if value is None else clamp_sleep(value)

    return RateLimitInfo(
        limit_requests=_int(headers.get("x-ratelimit-limit-requests")),
        remaining_requests=_int(headers.get("x-ratelimit-remaining-requests")),
        reset_requests_s=dur("x-ratelimit-reset-requests"),
        limit_tokens=_int(headers.get("x-ratelimit-limit-tokens")),
        remaining_tokens=_int(headers.get("x-ratelimit-remaining-tokens")),
        reset_tokens_s=dur("x-ratelimit-reset-tokens"),
    )


# -- error sorting -------------------------------------------------------------------------------
def _headers(exc: openai.APIStatusError) -> Mapping[str, str]:
    return exc.response.headers


def image_url_of(exc: openai.APIStatusError) -> str | None:
    """The image URL of a 400 download error, or None if it is not one."""
    message = str(getattr(exc, "message", "") or "")
    body = exc.body if isinstance(exc.body, dict) else {}
    message = str(body.get("message") or message)
    code = str(exc.code or "")
    param = str(exc.param or "")
    is_image = (
        code in IMAGE_CODES
        or code.startswith("image_")
        or (code == "invalid_value" and param == "url")
        or "downloading" in message.lower()
    )
    if not is_image:
        return None
    match = _URL_IN_MESSAGE.search(message)
    return match.group(1) if match else ""


def classify(exc: openai.OpenAIError | ValueError) -> GenError:
    """The error-tree member for an SDK exception (see the module docstring).

    A ``ValueError`` is what the SDK lets through for a 200 whose body is not JSON.
    """
    text = f"{type(exc).__name__}: {exc}"[:1000]
    if isinstance(exc, ValueError):
        return InvalidModelOutput(text)
    if isinstance(exc, openai.APIResponseValidationError):
        return InvalidModelOutput(text)
    if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
        return UpstreamUnavailable(text)
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        if status == 429:
            wait = retry_after(_headers(exc))
            if exc.code == "insufficient_quota" or exc.type == "insufficient_quota":
                return QuotaExhausted(text, retry_after=wait)
            return RateLimited(text, retry_after=wait)
        if status >= 500 or status in (408, 409):
            return UpstreamUnavailable(text)
        if status == 400:
            url = image_url_of(exc)
            if url is not None:
                return ImageDownloadFailed(text, url=url or None)
        return PermanentError(text, code=f"openai_{status}")
    if isinstance(exc, openai.APIError):
        return InvalidModelOutput(text)
    return PermanentError(text)


def retry_delay(
    error: GenError,
    attempt: int,
    *,
    base_s: float = 2.0,
    cap_s: float = 300.0,
    quota_s: float = 300.0,
    rng: random.Random | None = None,
) -> float:
    """Jittered exponential delay before try ``attempt + 1`` (attempt counts from 1).

    Full jitter on ``base * 2**(attempt-1)`` capped at ``cap_s``; a server ``retry_after`` is a
    floor (plus up to 20 % jitter so a crowd does not return at once); exhausted quota waits at
    least ``quota_s``.
    """
    rng = rng or random.Random()
    exp = min(cap_s, base_s * 2 ** max(0, attempt - 1))
    delay = rng.uniform(exp / 2, exp)
    server = getattr(error, "retry_after", None)
    if isinstance(server, int | float) and server > 0:
        delay = max(delay if not isinstance(error, RateLimited) else 0.0, server)
        delay *= 1 + 0.2 * rng.random()
    if isinstance(error, QuotaExhausted):
        return max(delay, quota_s)
    return min(delay, cap_s)


# -- client-side throttle ------------------------------------------------------------------------
class ThrottleSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    start: int = Field(default=8, ge=1, description="initial concurrency window")
    floor: int = Field(default=1, ge=1)
    ceiling: int = Field(default=64, ge=1)
    increase_every: int = Field(default=20, ge=1, description="successes per +1 of the window")
    low_water: float = Field(
        default=0.05, ge=0, le=1, description="start pacing below this share of the limit"
    )


class Throttle:
    """Paces model calls of one process from the rate-limit headers and 429s (see module doc)."""

    def __init__(
        self,
        settings: ThrottleSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.window = float(min(settings.start, settings.ceiling))
        self.in_flight = 0
        self.spacing = 0.0
        self.not_before = 0.0
        self._next_start = 0.0
        self._successes = 0
        self._clock = clock
        self._rng = rng or random.Random()
        self._cond = asyncio.Condition()
        self.rate_limited = 0

    def delay(self) -> float:
        """Seconds until a call may start if a slot is free (0 = now)."""
        now = self._clock()
        return max(0.0, self.not_before - now, self._next_start - now)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Wait for a free slot in the window and for the pacing delay, then hold the slot."""
        async with self._cond:
            while True:
                wait = self.delay()
                if wait <= 0 and self.in_flight < max(1, int(self.window)):
                    break
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._cond.wait(), wait if wait > 0 else None)
            self.in_flight += 1
            # GCRA-like: a start that came late (scheduling, DB latency) may be caught up by
            # up to two intervals, so the sustained rate stays at the limit, not below it.
            floor = self._clock() - 2 * self.spacing
            self._next_start = max(floor, self._next_start) + self.spacing
        try:
            yield
        finally:
            async with self._cond:
                self.in_flight -= 1
                self._cond.notify_all()

    def on_response(self, info: RateLimitInfo, *, tokens: int = 0) -> None:
        """A successful call: grow the window additively, pace if the limits run low."""
        s = self.settings
        self._successes += 1
        if self._successes % s.increase_every == 0:
            self.window = min(float(s.ceiling), self.window + 1)
        spacing = 0.0
        lim, left = info.limit_requests, info.remaining_requests
        if lim and left is not None and left <= max(lim * s.low_water, 2 * self.window):
            spacing = 60.0 / lim
        tlim, tleft = info.limit_tokens, info.remaining_tokens
        low_tokens = tleft is not None and tleft <= max(tlim or 0, 0) * s.low_water
        if (
            tlim
            and tleft is not None
            and tokens > 0
            and (low_tokens or tleft <= 2 * self.window * tokens)
        ):
            spacing = max(spacing, tokens * 60.0 / tlim)
        self.spacing = clamp_sleep(spacing)

    def on_rate_limited(self, retry_after_s: float | None) -> None:
        """A 429: halve the window and pause every caller for the (jittered) retry-after."""
        self.rate_limited += 1
        self.window = max(float(self.settings.floor), self.window / 2)
        wait = clamp_sleep(retry_after_s if retry_after_s is not None else 1.0)
        wait = clamp_sleep(wait * (1 + 0.2 * self._rng.random()))
        self.not_before = max(self.not_before, self._clock() + wait)

    def on_timeout(self) -> None:
        self.window = max(float(self.settings.floor), self.window / 2)


# -- start-up model check ------------------------------------------------------------------------
async def check_models(
    client: openai.AsyncOpenAI,
    names: list[str],
    *,
    refuse_retired: bool = True,
    today: dt.date | None = None,
) -> dict[str, str | None]:
    """Look the configured models up in ``GET /v1/models``; returns ``{name: shutdown_date}``.

    A future shutdown date is a warning. A model that is already shut down, or not listed, is an
    error: with ``refuse_retired`` it raises :class:`PermanentError` so the process refuses to
    start (every call would be a 404 and every lot would fail). If ``/v1/models`` itself cannot
    be read, the check is skipped with a warning: OpenAI's availability is no start-up condition.
    """
    today = today or dt.datetime.now(dt.UTC).date()
    try:
        listed = {m.id: m async for m in client.models.list()}
    except (openai.OpenAIError, ValueError) as exc:
        log.warning("cannot list OpenAI models; start-up check skipped", extra={"error": repr(exc)})
        return {}
    found: dict[str, str | None] = {}
    for name in names:
        model = listed.get(name)
        shutdown = getattr(model, "shutdown_date", None) if model is not None else None
        found[name] = str(shutdown) if shutdown else None
        retired = model is None or (shutdown is not None and str(shutdown) <= today.isoformat())
        if retired:
            log.error("configured model is not served", extra={"model": name, "shutdown": shutdown})
            if refuse_retired:
                raise PermanentError(f"model {name} is not served (shutdown date {shutdown})")
        elif shutdown:
            log.warning(
                "configured model has a shutdown date",
                extra={"model": name, "shutdown_date": str(shutdown)},
            )
    return found
