"""An httpx client that only ever connects to addresses the SSRF policy checked (DNS pinning).

Every request runs :func:`gen_common.ssrf.resolve_checked` at send time, then asks httpx for
``scheme://<checked ip>:<port>/path`` with ``Host: <host>`` and, for https, the ``sni_hostname``
extension, so TLS SNI and certificate verification use the host name while the socket goes to the
address that passed the check (https://www.python-httpx.org/advanced/extensions/). httpx never
resolves the name itself, which closes the DNS-rebinding window. Redirects are never followed and
no proxy or other setting is read from the environment.

The transport is :class:`gen_common.http1.Http1Transport` (keep-alive HTTP/1.1 on asyncio
streams, O(1) per request; ``limits.max_keepalive_connections`` caps its idle connections per
address, and callers bound concurrency themselves). An https connection verified for one host name
must not carry another host's request, so https traffic gets one client per host name (bounded LRU
of idle clients); plain http shares one. ``transport_factory`` swaps the transport (tests).
"""

from __future__ import annotations

import ssl
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import httpx

from gen_common.http1 import Http1Transport
from gen_common.ssrf import CheckedTarget, Resolver, SsrfSettings, resolve_checked

DEFAULT_READ_LIMIT = 1024 * 1024


def _tls_context(verify: ssl.SSLContext | bool) -> ssl.SSLContext | None:
    """None: the default context (certificates verified), built on first https use."""
    if isinstance(verify, ssl.SSLContext):
        return verify
    if verify:
        return None
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@dataclass(frozen=True, slots=True)
class SafeResponse:
    """A response whose body was read up to ``read_limit`` bytes (decoded)."""

    status_code: int
    headers: httpx.Headers
    body: bytes
    truncated: bool  # the body was longer than read_limit; reading stopped, connection closed
    target: CheckedTarget


class SafeClient:
    """One per service (or per purpose); use as ``async with SafeClient(policy) as client``."""

    def __init__(
        self,
        policy: SsrfSettings,
        *,
        resolver: Resolver | None = None,
        timeout: httpx.Timeout | float = 15.0,
        limits: httpx.Limits = httpx.Limits(max_connections=100, max_keepalive_connections=20),  # noqa: B008
        verify: ssl.SSLContext | bool = True,
        max_https_hosts: int = 64,
        transport_factory: Callable[[], httpx.AsyncBaseTransport] | None = None,
    ) -> None:
        self.policy = policy
        self._resolver = resolver
        self._timeout = timeout
        self._limits = limits
        self._verify = verify
        self._max_https_hosts = max_https_hosts
        self._transport_factory = transport_factory
        self._http: httpx.AsyncClient | None = None
        self._https: OrderedDict[str, httpx.AsyncClient] = OrderedDict()
        self._busy: dict[str, int] = {}

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        clients = [*self._https.values(), *([self._http] if self._http else [])]
        self._https.clear()
        self._http = None
        for client in clients:
            await client.aclose()

    def _new_client(self) -> httpx.AsyncClient:
        transport = (
            self._transport_factory()
            if self._transport_factory
            else Http1Transport(
                tls=_tls_context(self._verify), max_idle=self._limits.max_keepalive_connections or 0
            )
        )
        return httpx.AsyncClient(
            transport=transport, follow_redirects=False, trust_env=False, timeout=self._timeout
        )

    def _client_for(self, target: CheckedTarget) -> httpx.AsyncClient:
        if target.url.scheme == "http":
            if self._http is None:
                self._http = self._new_client()
            return self._http
        client = self._https.get(target.host)
        if client is None:
            client = self._https[target.host] = self._new_client()
        self._https.move_to_end(target.host)
        return client

    async def _evict_idle(self) -> None:
        while len(self._https) > self._max_https_hosts:
            idle = next((h for h in self._https if not self._busy.get(h)), None)
            if idle is None:
                return
            await self._https.pop(idle).aclose()

    async def check(self, url: str | httpx.URL) -> CheckedTarget:
        """The policy decision alone (e.g. at webhook registration); raises like resolve_checked."""
        return await resolve_checked(url, self.policy, resolver=self._resolver)

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        request_timeout: httpx.Timeout | float | None = None,
    ) -> AsyncIterator[tuple[CheckedTarget, httpx.Response]]:
        """Check ``url`` now, send to the checked address, yield the unread streaming response.

        Raises RefusedAddress / InvalidUrl / UnresolvableHost before any connection, and httpx's
        own errors (``httpx.TransportError``, timeouts) for the exchange.
        """
        target = await self.check(url)
        client = self._client_for(target)
        send_headers = {k: v for k, v in (headers or {}).items() if k.lower() != "host"}
        send_headers["Host"] = target.host_header
        extensions = {"sni_hostname": target.host} if target.url.scheme == "https" else {}
        request = client.build_request(
            method,
            target.pinned_url,
            headers=send_headers,
            content=content,
            timeout=self._timeout if request_timeout is None else request_timeout,
            extensions=extensions,
        )
        self._busy[target.host] = self._busy.get(target.host, 0) + 1
        try:
            response = await client.send(request, stream=True)
            try:
                yield target, response
            finally:
                await response.aclose()
        finally:
            self._busy[target.host] -= 1
            if not self._busy[target.host]:
                del self._busy[target.host]
            await self._evict_idle()

    async def request(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        request_timeout: httpx.Timeout | float | None = None,
        read_limit: int = DEFAULT_READ_LIMIT,
    ) -> SafeResponse:
        """Send and read at most ``read_limit`` body bytes; beyond that stop and close."""
        async with self.stream(
            method, url, headers=headers, content=content, request_timeout=request_timeout
        ) as (target, response):
            body = bytearray()
            truncated = False
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > read_limit:
                    truncated = True
                    del body[read_limit:]
                    break
            return SafeResponse(
                status_code=response.status_code,
                headers=response.headers,
                body=bytes(body),
                truncated=truncated,
                target=target,
            )
