"""SafeClient behaviour: allowlist, no redirects, capped reads, TLS to the pinned IP with SNI.

Servers are the loopback canary (127.0.0.1/127.0.0.2/::1, must stay unhit) and origin (127.0.0.3,
allow-listed) from test_ssrf; TLS uses a self-signed certificate made with the openssl CLI.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from gen_common.errors import RefusedAddress
from gen_common.safe_http import SafeClient
from gen_common.ssrf import InvalidUrl, SsrfSettings, UnresolvableHost, resolve_checked

from tests.common.test_ssrf import LocalServer, Tripwire, canary, clean, origin, stub_resolver

__all__ = ["canary", "clean", "origin"]  # module fixtures shared with test_ssrf

ORIGIN_ONLY = SsrfSettings(allow_cidrs=["127.0.0.3/32"])


async def test_allowlist_reaches_local_server(origin: LocalServer, clean: None) -> None:
    resolver = stub_resolver({"hook.test": [["127.0.0.3"]]})
    wire = Tripwire()
    async with SafeClient(ORIGIN_ONLY, resolver=resolver, transport_factory=wire.transport) as c:
        response = await c.request(
            "POST",
            f"http://hook.test:{origin.port}/in",
            headers={"Host": "evil.test"},
            content=b"x",
        )
    assert response.status_code == 200
    assert response.body == b"ok"
    assert response.target.ip == "127.0.0.3"
    assert origin.hits == [("127.0.0.3", "/in", f"hook.test:{origin.port}")]  # caller Host ignored
    assert wire.dials == [("127.0.0.3", origin.port)]


async def test_allowlist_is_exact(origin: LocalServer, clean: None) -> None:
    async with SafeClient(ORIGIN_ONLY) as c:
        with pytest.raises(RefusedAddress):
            await c.request("GET", f"http://127.0.0.2:{origin.port}/")


async def test_redirect_is_returned_not_followed(
    canary: LocalServer, origin: LocalServer, clean: None
) -> None:
    origin.redirect_to = f"http://127.0.0.1:{canary.port}/landed"
    async with SafeClient(ORIGIN_ONLY) as c:
        response = await c.request("GET", f"http://127.0.0.3:{origin.port}/redirect")
    assert response.status_code == 302
    assert response.headers["location"] == origin.redirect_to
    assert [p for _, p, _ in origin.hits] == ["/redirect"]


async def test_body_read_is_capped(origin: LocalServer, clean: None) -> None:
    async with SafeClient(ORIGIN_ONLY) as c:
        capped = await c.request("GET", f"http://127.0.0.3:{origin.port}/big", read_limit=1000)
        full = await c.request("GET", f"http://127.0.0.3:{origin.port}/", read_limit=1000)
    assert (capped.truncated, len(capped.body)) == (True, 1000)
    assert (full.truncated, full.body) == (False, b"ok")


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("ftp://127.0.0.3/", InvalidUrl),
        ("http://user:pw@hook.test/", InvalidUrl),
        ("http://hook.test/" + "a" * 2100, InvalidUrl),
        ("http://" + "a" * 254 + "/", InvalidUrl),
        ("http://a b/", InvalidUrl),
        ("http://[fe80::1%25lo]/", InvalidUrl),
        ("http:///path", InvalidUrl),
        ("http://hook.test:8080/", InvalidUrl),  # port not in allowed_ports
    ],
)
async def test_malformed_and_unresolvable(url: str, error: type[Exception]) -> None:
    policy = SsrfSettings(allowed_ports=[80, 443])
    async with SafeClient(policy) as c:
        with pytest.raises(error):
            await c.request("GET", url)


async def _no_such_host(host: str, port: int) -> list[str]:
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


async def _dns_down(host: str, port: int) -> list[str]:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def test_unresolvable_host_is_distinguishable() -> None:
    async with SafeClient(SsrfSettings(), resolver=_no_such_host) as c:
        with pytest.raises(UnresolvableHost) as info:
            await c.request("GET", "http://nxdomain.test/")
    assert not isinstance(info.value, RefusedAddress)
    assert (info.value.code, info.value.temporary) == ("unresolvable_host", False)
    policy = SsrfSettings(resolve_timeout_s=0.05)
    with pytest.raises(UnresolvableHost) as info:
        await resolve_checked("http://slow.test/", policy, resolver=_dns_down)
    assert info.value.temporary


async def test_https_only_policy() -> None:
    async with SafeClient(SsrfSettings(allow_http=False)) as c:
        with pytest.raises(InvalidUrl, match="https"):
            await c.check("http://hook.test/")


def test_allow_cidrs_validated() -> None:
    with pytest.raises(ValueError, match="does not appear to be"):
        SsrfSettings(allow_cidrs=["not-a-cidr"])


@pytest.fixture(scope="module")
def tls_origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """HTTPS server on 127.0.0.3 with a self-signed cert valid only for hook.test."""
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=hook.test",
         "-addext", "subjectAltName=DNS:hook.test"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    sni_seen: list[str | None] = []
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    ctx.sni_callback = lambda _sock, name, _ctx: sni_seen.append(name)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = f"{self.headers['Host']}|{sni_seen[-1]}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def get_request(self) -> tuple[Any, Any]:
            sock, addr = super().get_request()
            return ctx.wrap_socket(sock, server_side=True), addr

    server = Server(("127.0.0.3", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], cert
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


async def test_https_pinned_ip_with_sni_and_cert_check(tls_origin: tuple[int, Path]) -> None:
    port, cert = tls_origin
    verify = ssl.create_default_context(cafile=str(cert))
    resolver = stub_resolver({"hook.test": [["127.0.0.3"]], "other.test": [["127.0.0.3"]]})
    async with SafeClient(ORIGIN_ONLY, resolver=resolver, verify=verify) as c:
        response = await c.request("GET", f"https://hook.test:{port}/")
        assert response.body == f"hook.test:{port}|hook.test".encode()
        # same IP, but the certificate does not name other.test: verification must fail, even
        # though a verified connection to that IP:port sits in a pool
        with pytest.raises(httpx.ConnectError, match=r"CERTIFICATE_VERIFY_FAILED|hostname"):
            await c.request("GET", f"https://other.test:{port}/")
