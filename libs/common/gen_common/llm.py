"""OpenAI plumbing shared by vision and translate: the client, error sorting, retry delays.

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

- Rate-limit headers and the client-side throttle live in :mod:`gen_common.ratelimits`; reading an
  answer's body is :mod:`gen_common.llm_answer`, the start-up model check
  :mod:`gen_common.model_check`.

Retries: the SDK retries at most ``max_retries`` (default 1) times on its own. Our retries of a
lot happen in the caller: :func:`retry_delay` gives a jittered exponential delay per error class
(honouring a server ``retry_after``); callers either wait it in-process (tenacity) or store it as
the work row's ``next_attempt_at``, which survives a crash and is visible in SQL.
"""

from __future__ import annotations

import random
import re
import urllib.request
from collections.abc import Mapping

import openai

from gen_common.errors import (
    GenError,
    InvalidModelOutput,
    PermanentError,
    RateLimited,
    RetryableError,
    UpstreamUnavailable,
)
from gen_common.http1 import OpenAITransport
from gen_common.ratelimits import retry_after
from gen_common.settings import OpenAISettings

IMAGE_CODES = frozenset(
    {"invalid_image_url", "failed_to_download_image", "image_file_not_found", "invalid_image"}
)
_URL_IN_MESSAGE = re.compile(r"(?:downloading|download)\s+(\S+?)\.?(?:\s|$)", re.I)


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
    """The SDK client with an explicit timeout (read/write/pool and connect) and max_retries,
    on our HTTP/1.1 transport (:class:`gen_common.http1.OpenAITransport`), which speaks to the
    API directly: where the environment names a proxy (``HTTPS_PROXY`` and the like), the SDK's
    own client is kept, so a deployment behind an egress proxy still gets out."""
    direct = not urllib.request.getproxies()
    return openai.AsyncOpenAI(
        api_key=settings.api_key.get_secret_value() or "sk-unset",
        base_url=settings.base_url,
        timeout=openai.Timeout(settings.timeout_s, connect=settings.connect_timeout_s),
        max_retries=settings.max_retries,
        http_client=openai.DefaultAsyncHttpxClient(transport=OpenAITransport()) if direct else None,
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
