"""The SSRF address policy shared by image fetching (vision) and webhook delivery (notifier).

:func:`resolve_checked` parses a URL strictly, resolves its host ONCE with ``loop.getaddrinfo``
(the host string is never interpreted here: glibc reads ``0x7f.1``, ``2130706433`` as 127.0.0.1),
canonicalises every answer (IPv4-mapped, NAT64, 6to4, Teredo) and refuses the URL if ANY answer
lies in the explicit block list below (not ``ipaddress.is_global``: Python 3.11 ships stale
tables, CVE-2024-4032). The returned :class:`CheckedTarget` names the one address to dial;
:mod:`gen_common.safe_http` connects to exactly that address.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

from gen_common.errors import PermanentError, RefusedAddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""``async (host, port) -> [ip, ...]``; the default uses ``loop.getaddrinfo``."""

BLOCKED: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
        "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
        "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
        "255.255.255.255/32", "100.100.100.200/32",
        "::/96", "::1/128", "::ffff:0:0/96", "64:ff9b:1::/48", "100::/64", "2001:db8::/32",
        "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8", "fd00:ec2::254/128",
    )
)  # fmt: skip
"""Refused ranges. IPv4-mapped addresses are refused as such (``::ffff:0:0/96``) unless their IPv4
is allow-listed; NAT64 (64:ff9b::/96), 6to4 (2002::/16) and Teredo forms are judged by the IPv4
they embed as well as by themselves."""

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_HOSTNAME = re.compile(
    r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*\.?$"
)
REFUSED_RANGE = "requests to this address range are refused"


class InvalidUrl(RefusedAddress):
    """The URL itself is refused (scheme, userinfo, length, port, malformed host)."""

    code = "invalid_url"

    def __init__(self, reason: str) -> None:
        super().__init__(f"URL refused: {reason}")


class UnresolvableHost(PermanentError):
    """The host name has no address (an "unreachable" outcome, not an attack).

    ``temporary`` is True for a DNS timeout / EAI_AGAIN, which a webhook retry may outlive.
    """

    code = "unresolvable_host"

    def __init__(self, message: str = "", *, temporary: bool = False) -> None:
        super().__init__(message)
        self.temporary = temporary


class SsrfSettings(BaseModel):
    """The policy, usable as a settings sub-model.

    Env example: ``VISION__SSRF__ALLOW_CIDRS='["10.1.0.0/16"]'``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    allow_cidrs: list[str] = Field(
        default_factory=list, description="allowed despite the block list"
    )
    allow_http: bool = True
    allowed_ports: list[int] | None = None
    max_url_length: int = Field(default=2048, ge=16)
    resolve_timeout_s: float = Field(default=5.0, gt=0)

    @field_validator("allow_cidrs")
    @classmethod
    def _valid_cidrs(cls, value: list[str]) -> list[str]:
        for cidr in value:
            ipaddress.ip_network(cidr, strict=False)
        return value

    def allowed_networks(self) -> tuple[IPNetwork, ...]:
        return tuple(ipaddress.ip_network(c, strict=False) for c in self.allow_cidrs)


Policy = SsrfSettings


@dataclass(frozen=True, slots=True)
class CheckedTarget:
    """A URL that passed the policy, and the one address that must be dialled for it."""

    url: httpx.URL  # the original URL, normalised by httpx
    host: str  # ASCII (IDNA) host, IPv6 without brackets
    port: int
    ip: str  # the address to dial
    addresses: tuple[str, ...]  # every resolved address (all passed)

    @property
    def pinned_url(self) -> httpx.URL:
        """The URL with its host replaced by :attr:`ip` (what the transport connects to)."""
        return self.url.copy_with(host=self.ip, port=self.port, fragment=None)

    @property
    def host_header(self) -> str:
        name = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.url.scheme == "https" else 80
        return name if self.port == default else f"{name}:{self.port}"


def embedded_ipv4(addr: IPAddress) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (mapped, NAT64, 6to4, Teredo)."""
    if isinstance(addr, ipaddress.IPv4Address):
        return []
    found: list[ipaddress.IPv4Address] = []
    if addr.ipv4_mapped is not None:
        found.append(addr.ipv4_mapped)
    if addr in _NAT64:
        found.append(ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF))
    if addr.sixtofour is not None:
        found.append(addr.sixtofour)
    if addr.teredo is not None:
        found.extend(addr.teredo)
    return found


def refusal(addr: IPAddress, allowed: Sequence[IPNetwork] = ()) -> str | None:
    """Why ``addr`` is refused, or None when it may be dialled."""
    forms: list[IPAddress] = [addr, *embedded_ipv4(addr)]
    if any(f in net for f in forms for net in allowed if f.version == net.version):
        return None
    for form in forms:
        for net in BLOCKED:
            if form.version == net.version and form in net:
                return f"{REFUSED_RANGE} ({addr} in {net})"
    return None


async def system_resolver(host: str, port: int) -> list[str]:
    """Resolve with the event loop's ``getaddrinfo`` (glibc semantics). A host in the canonical
    form of an address is that address (no thread hop); every other form, e.g. ``0x7f.1`` or
    ``2130706433``, which ``ipaddress`` does not parse, goes to ``getaddrinfo``."""
    with contextlib.suppress(ValueError):
        return [str(ipaddress.ip_address(host))]
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return [str(info[4][0]) for info in infos]


def parse_url(url: str | httpx.URL, policy: SsrfSettings) -> tuple[httpx.URL, str, int]:
    """Strict parse: ``(url, ascii_host, port)`` or :class:`InvalidUrl`."""
    text = str(url)
    if len(text) > policy.max_url_length:
        raise InvalidUrl(f"URL longer than {policy.max_url_length} characters")
    try:
        parsed = httpx.URL(text)
        host = parsed.raw_host.decode("ascii").lower()
    except (httpx.InvalidURL, UnicodeError) as exc:
        raise InvalidUrl(f"malformed URL: {exc}") from None
    schemes = ("http", "https") if policy.allow_http else ("https",)
    if parsed.scheme not in schemes:
        raise InvalidUrl(f"scheme must be one of {', '.join(schemes)}")
    if parsed.userinfo:
        raise InvalidUrl("credentials in the URL are refused")
    if not host or len(host) > 253:
        raise InvalidUrl("URL needs a host of at most 253 characters")
    if "%" in host:
        raise InvalidUrl("escapes and IPv6 zone ids are refused in the host")
    if ":" in host:
        try:  # an IPv6 literal
            ipaddress.IPv6Address(host)
        except ValueError:
            raise InvalidUrl("malformed IPv6 host") from None
    elif not _HOSTNAME.match(host):
        raise InvalidUrl("malformed host name")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    if not 0 < port < 65536 or (
        policy.allowed_ports is not None and port not in policy.allowed_ports
    ):
        raise InvalidUrl(f"port {port} is not allowed")
    return parsed, host, port


async def resolve_checked(
    url: str | httpx.URL, policy: SsrfSettings, *, resolver: Resolver | None = None
) -> CheckedTarget:
    """Parse, resolve once, and refuse unless every resolved address passes the policy.

    Raises :class:`InvalidUrl` / :class:`~gen_common.errors.RefusedAddress` (both permanent, the
    former a subclass of the latter) or :class:`UnresolvableHost`.
    """
    parsed, host, port = parse_url(url, policy)
    try:
        async with asyncio.timeout(policy.resolve_timeout_s):
            answers = list(await (resolver or system_resolver)(host, port))
    except TimeoutError:
        raise UnresolvableHost(f"resolving {host} timed out", temporary=True) from None
    except socket.gaierror as exc:
        temporary = exc.errno == socket.EAI_AGAIN
        raise UnresolvableHost(f"cannot resolve {host}: {exc}", temporary=temporary) from None
    if not answers:
        raise UnresolvableHost(f"{host} has no address")
    allowed = policy.allowed_networks()
    dial: list[str] = []
    for answer in answers:
        try:
            addr = ipaddress.ip_address(answer.split("%", 1)[0])
        except ValueError:
            raise RefusedAddress(f"resolver returned a non-address {answer!r}") from None
        reason = refusal(addr, allowed)
        if reason is not None:
            raise RefusedAddress(reason)
        mapped = addr.ipv4_mapped if isinstance(addr, ipaddress.IPv6Address) else None
        dial.append(str(mapped or addr))
    return CheckedTarget(url=parsed, host=host, port=port, ip=dial[0], addresses=tuple(dial))
