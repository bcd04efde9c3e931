"""The one error tree of the Generation Service.

Every failure a stage can meet is sorted into one of two branches, and the runtime acts on the
branch alone::

    GenError
    ├── RetryableError          try again later; nothing is lost
    │   ├── UpstreamUnavailable     OpenAI / a webhook receiver timed out, 5xx, connection lost
    │   ├── RateLimited             a 429 (carries ``retry_after`` seconds when known)
    │   ├── BreakerOpen             the circuit breaker refuses the call right now
    │   └── InfrastructureError     PostgreSQL or Kafka unavailable
    └── PermanentError          retrying cannot help
        ├── InvalidEvent            undecodable or schema-invalid record -> dead_letter
        ├── InvalidModelOutput      refusal, truncated or unparseable model answer
        ├── RefusedAddress          the SSRF guard refused a URL
        └── BadSignature            a request or webhook signature does not verify

The Kafka consumer and the work-queue runner map them to one behaviour each: retryable -> the work
stays queued with ``next_attempt_at`` (or the offset is not committed); permanent -> a dead_letter
row or a ``lots.failed`` event, and the offset is committed. HTTP services map them to the
contract's ``{"error": ...}`` bodies.
"""

from __future__ import annotations


class GenError(Exception):
    """Base of every error the services raise on purpose."""

    code: str = "error"

    def __init__(self, message: str = "", *, code: str | None = None) -> None:
        super().__init__(message or self.__class__.__name__)
        if code is not None:
            self.code = code


class RetryableError(GenError):
    """A transient failure: the same work may succeed later."""

    code = "retryable"


class UpstreamUnavailable(RetryableError):
    code = "upstream_unavailable"


class RateLimited(RetryableError):
    code = "rate_limited"

    def __init__(self, message: str = "", *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BreakerOpen(RetryableError):
    code = "breaker_open"


class InfrastructureError(RetryableError):
    code = "infrastructure"


class PermanentError(GenError):
    """A failure that retrying cannot fix."""

    code = "permanent"


class InvalidEvent(PermanentError):
    code = "invalid_event"


class InvalidModelOutput(PermanentError):
    code = "invalid_model_output"


class RefusedAddress(PermanentError):
    code = "refused_address"


class BadSignature(PermanentError):
    code = "bad_signature"
