"""SSRF guard (reliability.md §7 S1/S2; issues 5 and 6): every refused form, canaries, rebinding.

All traffic stays on loopback: real local servers listen on 127.0.0.1, 127.0.0.2, ::1 (the canary,
which must never be hit) and 127.0.0.3 (an allow-listed "origin"), all on one port, so a URL that
escaped the guard would really land on the canary. Safe-client requests go through a tripwire
network backend that records every dial and refuses anything off loopback, so even a broken guard
can never send a packet off this machine; the dial record shows the address actually dialled.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpcore
import httpx
import pytest
from gen_common.errors import RefusedAddress
from gen_common.safe_http import SafeClient
from gen_common.ssrf import BLOCKED, SsrfSettings, refusal, resolve_checked, system_resolver
from hypothesis import given
from hypothesis import strategies as st

PUBLIC = "93.184.216.34"  # decisions only: the tripwire refuses to dial it


class LocalServer:
    """Threaded HTTP servers on several loopback addresses sharing one port; records every hit."""

    def __init__(self, addresses: Sequence[str], port: int = 0) -> None:
        self.hits: list[tuple[str, str, str]] = []  # (local address, path, Host header)
        self.redirect_to = ""
        self._servers: list[ThreadingHTTPServer] = []
        for addr in addresses:
            server = self._bind(addr, port)
            port = server.server_address[1]
            self._servers.append(server)
        self.port = port
        self._threads = [
            threading.Thread(target=s.serve_forever, daemon=True) for s in self._servers
        ]
        for t in self._threads:
            t.start()

    def _bind(self, addr: str, port: int) -> ThreadingHTTPServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                local = str(self.connection.getsockname()[0])
                owner.hits.append((local, self.path, self.headers["Host"]))
                if self.path == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", owner.redirect_to)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = b"x" * 5_000_000 if self.path == "/big" else b"ok"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_POST = do_HEAD = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            address_family = socket.AF_INET6 if ":" in addr else socket.AF_INET
            daemon_threads = True

        return Server((addr, port), Handler)

    def close(self) -> None:
        for s in self._servers:
            s.shutdown()
            s.server_close()
        for t in self._threads:
            t.join(timeout=5)


class Tripwire(httpcore.AsyncNetworkBackend):
    """Network backend recording every dial; refuses host names and non-loopback addresses."""

    def __init__(self) -> None:
        self.dials: list[tuple[str, int]] = []
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        self.dials.append((host, port))
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False  # a host name: the client resolved by itself (pinning broken)
        if not loopback:
            raise httpcore.ConnectError(f"tripwire: refusing to dial {host}")
        return await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)

    def transport(self) -> httpx.AsyncBaseTransport:
        t = httpx.AsyncHTTPTransport(trust_env=False, retries=0)
        t._pool = httpcore.AsyncConnectionPool(network_backend=self, retries=0)
        return t


def stub_resolver(answers: dict[str, list[list[str]]]) -> Callable[..., Any]:
    """``host -> [first answer, second answer, ...]``; the last answer repeats."""
    calls: dict[str, int] = {}

    async def resolve(host: str, port: int) -> list[str]:
        n = calls[host] = calls.get(host, 0) + 1
        seq = answers[host]
        return seq[min(n, len(seq)) - 1]

    return resolve


@pytest.fixture(scope="module")
def canary() -> Iterator[LocalServer]:
    server = LocalServer(["127.0.0.1", "127.0.0.2", "::1"])
    yield server
    server.close()


@pytest.fixture(scope="module")
def origin(canary: LocalServer) -> Iterator[LocalServer]:
    server = LocalServer(["127.0.0.3"], port=canary.port)
    yield server
    server.close()


@pytest.fixture
def clean(canary: LocalServer, origin: LocalServer) -> Iterator[None]:
    canary.hits.clear()
    origin.hits.clear()
    yield
    assert canary.hits == [], "the canary was hit"


# S1 table: literal hosts resolved by the real getaddrinfo, plus names from a stub resolver.
TABLE = [
    "127.0.0.1", "127.0.0.2", "0x7f.1", "2130706433", "0177.0.0.1", "[::1]", "[::ffff:127.0.0.1]",
    "[64:ff9b::a9fe:a9fe]", "[2002:a9fe:a9fe::]", "169.254.169.254", "100.64.0.1", "10.0.0.1",
    "10.255.255.255", "172.16.0.1", "172.31.255.255", "192.168.0.1", "192.168.255.255",
    "[fc00::1]", "[fd12::1]", "[fe80::1]", "[fd00:ec2::254]", "0.0.0.0", "100.100.100.200",
    "loopback.test", "mixed.test", "metadata.test",
]  # fmt: skip
NAMES = {
    "loopback.test": [["127.0.0.1"]],
    "mixed.test": [[PUBLIC, "127.0.0.2"]],  # any refused answer refuses the whole name
    "metadata.test": [["::ffff:169.254.169.254"]],
}
LOOPBACK = {
    "127.0.0.1", "127.0.0.2", "0x7f.1", "2130706433", "[::1]", "[::ffff:127.0.0.1]",
    "loopback.test",
}  # fmt: skip


async def resolve_table_name(host: str, port: int) -> list[str]:
    if host in NAMES:
        return NAMES[host][0]
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(i[4][0]) for i in infos]


@pytest.mark.parametrize("host", TABLE)
async def test_table_refused_by_check_and_by_request(
    host: str, canary: LocalServer, clean: None
) -> None:
    url = f"http://{host}:{canary.port}/table"
    policy = SsrfSettings()
    with pytest.raises(RefusedAddress):
        await resolve_checked(url, policy, resolver=resolve_table_name)
    wire = Tripwire()
    async with SafeClient(
        policy, resolver=resolve_table_name, transport_factory=wire.transport
    ) as client:
        with pytest.raises(RefusedAddress, match=r"refused"):
            await client.request("GET", url)
        with pytest.raises(RefusedAddress):
            await client.request("POST", url, content=b"{}")
    assert wire.dials == []


@pytest.mark.parametrize("host", sorted(LOOPBACK))
async def test_control_without_guard_the_canary_is_hit(host: str, canary: LocalServer) -> None:
    """The table URLs really point at the canary: allow-list loopback and it is hit."""
    canary.hits.clear()
    policy = SsrfSettings(allow_cidrs=["127.0.0.0/8", "::1/128"])
    wire = Tripwire()
    async with SafeClient(
        policy, resolver=resolve_table_name, transport_factory=wire.transport
    ) as client:
        response = await client.request("GET", f"http://{host}:{canary.port}/table")
    assert response.status_code == 200
    assert [path for _, path, _ in canary.hits] == ["/table"]
    canary.hits.clear()


@pytest.mark.parametrize("host", sorted(set(TABLE) - LOOPBACK - {"0177.0.0.1"}))
async def test_control_without_guard_the_request_would_leave(
    host: str, canary: LocalServer
) -> None:
    """With everything allow-listed, each non-loopback entry reaches the dialler (tripwire)."""
    policy = SsrfSettings(allow_cidrs=["0.0.0.0/0", "::/0"])
    wire = Tripwire()
    async with SafeClient(
        policy, resolver=resolve_table_name, transport_factory=wire.transport
    ) as client:
        with pytest.raises(httpx.ConnectError):
            await client.request("GET", f"http://{host}:{canary.port}/table")
    assert len(wire.dials) == 1
    assert not ipaddress.ip_address(wire.dials[0][0]).is_loopback


async def test_octal_host_is_refused_as_malformed() -> None:
    with pytest.raises(RefusedAddress, match="Invalid IPv4"):
        await resolve_checked("http://0177.0.0.1/", SsrfSettings())


@pytest.mark.parametrize(
    ("network", "sample"),
    [(str(n), str(n.network_address + n.num_addresses // 2)) for n in BLOCKED],
)
async def test_every_blocked_range_refused(network: str, sample: str) -> None:
    resolver = stub_resolver({"n.test": [[sample]]})
    with pytest.raises(RefusedAddress, match="requests to this address range are refused"):
        await resolve_checked("http://n.test/", SsrfSettings(), resolver=resolver)


IPV4_BLOCKED = [n for n in BLOCKED if n.version == 4]


@st.composite
def blocked_ipv4(draw: st.DrawFn) -> ipaddress.IPv4Address:
    net = draw(st.sampled_from(IPV4_BLOCKED))
    offset = draw(st.integers(min_value=0, max_value=net.num_addresses - 1))
    return ipaddress.IPv4Address(int(net.network_address) + offset)


def _decide(answer: str) -> str | None:
    return refusal(ipaddress.ip_address(answer))


@given(blocked_ipv4())
def test_property_blocked_ipv4_refused(addr: ipaddress.IPv4Address) -> None:
    assert _decide(str(addr)) is not None


@given(blocked_ipv4(), st.sampled_from(["mapped", "nat64", "6to4", "mapped-hex"]))
def test_property_embedded_forms_refused(addr: ipaddress.IPv4Address, form: str) -> None:
    n = int(addr)
    text = {
        "mapped": f"::ffff:{addr}",
        "mapped-hex": f"::ffff:{n >> 16:x}:{n & 0xFFFF:x}",
        "nat64": str(ipaddress.IPv6Address((0x64FF9B << 96) | n)),
        "6to4": str(ipaddress.IPv6Address((0x2002 << 112) | (n << 80) | 1)),
    }[form]
    assert _decide(text) is not None


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_property_ipv4_decision_matches_block_list(n: int) -> None:
    addr = ipaddress.IPv4Address(n)
    assert (_decide(str(addr)) is not None) == any(addr in net for net in IPV4_BLOCKED)


async def test_public_address_passes_and_is_pinned() -> None:
    resolver = stub_resolver({"example.com": [[PUBLIC, "2606:2800:220:1::1"]]})
    target = await resolve_checked(
        "https://Example.com/a/b?c=1#frag", SsrfSettings(), resolver=resolver
    )
    assert target.ip == PUBLIC
    assert target.addresses == (PUBLIC, "2606:2800:220:1::1")
    assert str(target.pinned_url) == f"https://{PUBLIC}/a/b?c=1"
    assert target.host_header == "example.com"


async def test_rebinding_public_first_dials_the_checked_address(
    canary: LocalServer, clean: None
) -> None:
    """S2 (ProbOS #1285): public first, loopback after -> the checked public IP is dialled."""
    resolver = stub_resolver({"rebind.test": [[PUBLIC], ["127.0.0.1"]]})
    wire = Tripwire()
    async with SafeClient(SsrfSettings(), resolver=resolver, transport_factory=wire.transport) as c:
        with pytest.raises(httpx.ConnectError, match="tripwire"):
            await c.request("GET", f"http://rebind.test:{canary.port}/rebind")
        # the next request re-checks at send time and now sees loopback
        with pytest.raises(RefusedAddress):
            await c.request("GET", f"http://rebind.test:{canary.port}/rebind")
    assert wire.dials == [(PUBLIC, canary.port)]


def _rebinding_getaddrinfo(monkeypatch: pytest.MonkeyPatch, first: str, after: str) -> list[object]:
    """Patch socket.getaddrinfo: 'rebind.test' (str or bytes) -> first, then after."""
    real = socket.getaddrinfo
    lookups: list[object] = []

    def fake(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host in ("rebind.test", b"rebind.test"):
            lookups.append(host)
            return real(first if len(lookups) == 1 else after, port, *args, **kwargs)
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return lookups


async def test_rebinding_with_system_resolver_goes_to_checked_address(
    monkeypatch: pytest.MonkeyPatch, canary: LocalServer, origin: LocalServer, clean: None
) -> None:
    lookups = _rebinding_getaddrinfo(monkeypatch, "127.0.0.3", "127.0.0.1")
    policy = SsrfSettings(allow_cidrs=["127.0.0.3/32"])
    async with SafeClient(policy) as client:
        response = await client.request("GET", f"http://rebind.test:{canary.port}/rebind")
    assert response.status_code == 200
    assert origin.hits == [("127.0.0.3", "/rebind", f"rebind.test:{canary.port}")]
    assert lookups == ["rebind.test"]  # resolved once, by the guard; httpx never resolved


@pytest.mark.parametrize(
    ("host", "looked_up", "address"),
    [
        ("127.0.0.1", False, "127.0.0.1"),
        ("::ffff:127.0.0.1", False, "::ffff:7f00:1"),
        ("2130706433", True, "127.0.0.1"),
        ("0x7f.1", True, "127.0.0.1"),
    ],
)
async def test_system_resolver_reads_canonical_literals_itself(
    monkeypatch: pytest.MonkeyPatch, host: str, looked_up: bool, address: str
) -> None:
    real = socket.getaddrinfo
    lookups: list[object] = []

    def counted(*args: Any, **kwargs: Any) -> Any:
        lookups.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", counted)
    assert await system_resolver(host, 80) == [address]
    assert lookups == ([host] if looked_up else [])


async def test_rebinding_control_unpinned_httpx_hits_canary(
    monkeypatch: pytest.MonkeyPatch, canary: LocalServer, origin: LocalServer
) -> None:
    """Without pinning, check-then-httpx re-resolves (bytes host) and lands on the canary."""
    canary.hits.clear()
    lookups = _rebinding_getaddrinfo(monkeypatch, "127.0.0.3", "127.0.0.1")
    url = f"http://rebind.test:{canary.port}/unpinned"
    await resolve_checked(url, SsrfSettings(allow_cidrs=["127.0.0.3/32"]))
    async with httpx.AsyncClient(trust_env=False) as plain:
        assert (await plain.get(url)).status_code == 200
    assert [p for _, p, _ in canary.hits] == ["/unpinned"]
    assert len(lookups) == 2
    canary.hits.clear()
