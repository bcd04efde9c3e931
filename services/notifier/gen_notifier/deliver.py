"""The one outside call: POST a stored body to a receiver through the SSRF-pinned client
(gen_notifier.http1: gen_common.ssrf checks the URL and the address before every attempt).

:func:`send` never raises for the receiver's behaviour; it returns an :class:`Outcome` that
classifies it: 2xx success; 410 gone (disable the endpoint); 3xx a failure (redirects are not
followed); 429 and timeouts are "overloaded" (at least ``overload_min_s`` before the next
try); a refused address (checked at send time, on the address actually dialled) is final.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from gen_common.errors import RefusedAddress
from gen_common.http1_wire import ProtocolError
from gen_common.ssrf import Resolver, SsrfSettings, UnresolvableHost, resolve_checked

from gen_notifier.http1 import PinnedClient


@dataclass(frozen=True, slots=True)
class Outcome:
    succeeded: bool
    status_code: int | None
    duration_ms: int
    response_body: str
    error_class: str | None  # http_status redirect gone timeout connect transport dns refused
    error: str
    retry_after: str | None = None

    @property
    def overloaded(self) -> bool:
        return self.error_class == "timeout" or self.status_code == 429

    @property
    def gone(self) -> bool:
        return self.status_code == 410

    @property
    def final(self) -> bool:
        """No retry can help (the address is refused by policy)."""
        return self.error_class == "refused"


def _classify(status: int) -> str | None:
    if 200 <= status < 300:
        return None
    if status == 410:
        return "gone"
    if 300 <= status < 400:
        return "redirect"
    return "http_status"


async def send(
    client: PinnedClient,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    timeout_s: float,
    max_bytes: int,
) -> Outcome:
    start = time.monotonic()

    def failed(error_class: str, error: str) -> Outcome:
        ms = int((time.monotonic() - start) * 1000)
        return Outcome(False, None, ms, "", error_class, error[:2000])

    try:
        async with asyncio.timeout(timeout_s):
            answer = await client.post(url, headers, body, read_limit=max_bytes)
    except TimeoutError:
        return failed("timeout", f"no answer within {timeout_s} s")
    except RefusedAddress as exc:  # InvalidUrl included
        return failed("refused", str(exc))
    except UnresolvableHost as exc:
        return failed("dns", str(exc))
    except (ProtocolError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        return failed("transport", f"{type(exc).__name__}: {exc}")
    except OSError as exc:  # refused, reset, unreachable, TLS
        return failed("connect", f"{type(exc).__name__}: {exc}")
    error_class = _classify(answer.status_code)
    return Outcome(
        succeeded=error_class is None,
        status_code=answer.status_code,
        duration_ms=int((time.monotonic() - start) * 1000),
        response_body=answer.body.decode("utf-8", errors="replace"),
        error_class=error_class,
        error="" if error_class is None else f"HTTP {answer.status_code}",
        retry_after=answer.headers.get("retry-after"),
    )


def registration_check(
    policy: SsrfSettings, *, timeout_s: float, resolver: Resolver | None = None
) -> Callable[[str], Awaitable[str | None]]:
    """The check at enqueue time: a refused URL or address gives the reason (never sent).

    A name that does not resolve within ``timeout_s`` is left to the send-time check, which
    runs before every attempt on the address actually dialled.
    """
    quick = policy.model_copy(update={"resolve_timeout_s": timeout_s})

    async def refuse(url: str) -> str | None:
        try:
            await resolve_checked(url, quick, resolver=resolver)
        except RefusedAddress as exc:
            return f"{exc.code}: {exc}"
        except UnresolvableHost:
            return None
        return None

    return refuse
