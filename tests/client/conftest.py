"""Real ingest, status and notifier processes for the CLI tests (one set per module), wired to
the session's PostgreSQL and Kafka with their own topic prefix, plus a CliRunner helper."""

from __future__ import annotations

import contextlib
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from gen_client.cli import app
from typer.testing import CliRunner, Result

from tests.harness.processes import child, settings_env, wait_until

KEY = "client-test-shared-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Services:
    ingest: str
    status: str
    notifier: str

    def gen(
        self, *args: str, input: bytes | str | None = None, v2: tuple[str, str, str] | None = None
    ) -> Result:
        """Run ``gen`` against these services (the base URL points nowhere: all overridden)."""
        env = {
            "GEN_BASE_URL": "http://127.0.0.1:9",
            "GEN_SHARED_KEY": KEY,
            "GEN_INGEST_URL": self.ingest,
            "GEN_STATUS_URL": self.status,
            "GEN_NOTIFIER_URL": self.notifier,
        }
        if v2 is not None:
            env |= {"GEN_CLIENT_ID": v2[0], "GEN_KEY_ID": v2[1], "GEN_SECRET": v2[2]}
        return run_gen(*args, env=env, input=input)


def run_gen(
    *args: str, env: dict[str, str] | None = None, input: bytes | str | None = None
) -> Result:
    return CliRunner().invoke(app, list(args), env=env or {}, input=input, catch_exceptions=False)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture(scope="module")
def services(
    migrated: str, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Services]:
    logs = tmp_path_factory.mktemp("client-services")
    ports = {name: free_port() for name in ("ingest", "status", "notifier")}
    env = settings_env(
        DB__URL=migrated,
        KAFKA__BOOTSTRAP_SERVERS=kafka_bootstrap,
        KAFKA__TOPIC_PREFIX=f"c{uuid.uuid4().hex[:10]}.",
        KAFKA__PARTITIONS="1",
        INGEST__PORT=str(ports["ingest"]),
        INGEST__SHARED_KEY=KEY,
        INGEST__DUPLICATE_WINDOW_S="0",
        STATUS__PORT=str(ports["status"]),
        STATUS__SHARED_KEY=KEY,
        STATUS__LEGACY_HEADER_SIGNATURES="false",
        NOTIFIER__HTTP_PORT=str(ports["notifier"]),
        NOTIFIER__SHARED_KEY=KEY,
    )
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    with (
        child("gen_ingest", env, logs / "ingest.log") as ingest,
        child("gen_status", env, logs / "status.log") as status,
        child("gen_notifier", env, logs / "notifier.log") as notifier,
    ):
        for name, proc in (("ingest", ingest), ("status", status), ("notifier", notifier)):
            log = logs / f"{name}.log"
            with contextlib.suppress(TimeoutError):
                wait_until(
                    lambda url=urls[name], p=proc: _healthy(url) or p.proc.poll() is not None,
                    timeout=60,
                )
            assert proc.proc is not None
            assert proc.proc.poll() is None, log.read_text()[-3000:]
            assert _healthy(urls[name]), (logs / f"{name}.log").read_text()[-3000:]
        yield Services(**urls)


@pytest.fixture
def lots_csv(tmp_path: Path) -> Path:
    path = tmp_path / "lots.csv"
    path.write_text(
        "lot_id,images,additional_info,webhook\n"
        'C1,https://img.example/1.jpg|https://img.example/2.jpg,"Front bumper, scratched",\n'
        "C2,https://img.example/3.jpg https://img.example/4.jpg,Ø rear door,\n"
    )
    return path
