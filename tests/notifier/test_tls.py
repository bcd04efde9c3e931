"""https delivery: the socket goes to the checked IP, TLS verifies the host name (SNI)."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from gen_common.ssrf import SsrfSettings
from gen_notifier.http1 import PinnedClient
from gen_notifier.metrics import Metrics
from gen_notifier.schedule import ManualClock
from gen_notifier.worker import Sender

from tests.harness.receiver import Receiver
from tests.notifier.conftest import KEY, attempts_of, enqueue, options

pytestmark = pytest.mark.pg


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=hook.test",
         "-addext", "subjectAltName=DNS:hook.test"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def https_receiver(cert: tuple[Path, Path]) -> Iterator[Receiver]:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*cert)
    with Receiver([KEY], host="127.0.0.3", tls=ctx) as rx:
        yield rx


async def test_https_to_the_pinned_address(
    pool: asyncpg.Pool, clock: ManualClock, https_receiver: Receiver, cert: tuple[Path, Path]
) -> None:
    async def resolver(host: str, port: int) -> list[str]:
        return ["127.0.0.3"]  # hook.test and other.test both point at the receiver

    o = options(ssrf=SsrfSettings(allow_cidrs=["127.0.0.3/32"]))
    client = PinnedClient(
        o.ssrf, resolver=resolver, tls=ssl.create_default_context(cafile=str(cert[0]))
    )
    sender = Sender(pool, client, o, clock, Metrics())
    port, path = https_receiver.port, https_receiver.path
    good = await enqueue(pool, o, clock, f"https://hook.test:{port}{path}")
    bad = await enqueue(pool, o, clock, f"https://other.test:{port}{path}")
    await sender.run_once()
    await client.aclose()
    (got,) = https_receiver.snapshot()
    assert got.msg_id == good
    assert got.verified
    assert got.headers["host"] == f"hook.test:{port}"
    (ok,) = await attempts_of(pool, good)
    assert ok["succeeded"]
    (refused,) = await attempts_of(pool, bad)
    assert refused["error_class"] == "connect"
    assert "CERTIFICATE_VERIFY_FAILED" in refused["error"] or "hostname" in refused["error"]
