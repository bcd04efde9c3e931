"""Run the simulator as a real subprocess for tests and benchmarks.

with openai_sim.process.running({"faults": {...}}) as sim:
    client = OpenAI(base_url=sim.base_url, api_key="sk-test")
    sim.admin.config({"storm": {"kind": "503", "duration_s": 5}})
    assert sim.admin.stats()["totals"]["calls"] == 1
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True, slots=True)
class Admin:
    """A tiny synchronous client of the /_sim/ admin API (stdlib only)."""

    root: str

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - loopback URL built by us
            self.root + path,
            data=data,
            method=method,
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return json.loads(response.read())

    def health(self) -> bool:
        try:
            return bool(self._call("GET", "/_sim/health")["ok"])
        except (urllib.error.URLError, ConnectionError, OSError):
            return False

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/_sim/stats")
        return result

    def calls(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/_sim/calls")["data"]
        return result

    def reset(self) -> None:
        self._call("POST", "/_sim/reset", {})

    def config(self, patch: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", "/_sim/config", patch)
        return result

    def clock(
        self,
        *,
        advance: float | None = None,
        set_to: float | None = None,
        speed: float | None = None,
    ) -> float:
        body = {"advance": advance, "set": set_to, "speed": speed}
        now: float = self._call("POST", "/_sim/clock", body)["now"]
        return now


@dataclass(frozen=True, slots=True)
class RunningSim:
    base_url: str  # http://127.0.0.1:PORT/v1, for OpenAI(base_url=...)
    admin: Admin
    process: subprocess.Popen[bytes]


@contextlib.contextmanager
def running(
    config: dict[str, Any] | None = None,
    *,
    port: int | None = None,
    cpu: int | None = None,
    extra_args: tuple[str, ...] = (),
    startup_timeout_s: float = 20.0,
) -> Iterator[RunningSim]:
    """Start ``python -m openai_sim`` on a free port, wait until it answers, stop it after."""
    port = port or free_port()
    cmd = [
        sys.executable,
        "-m",
        "openai_sim",
        "--port",
        str(port),
        "--config",
        json.dumps(config or {}),
    ]
    if cpu is not None:
        cmd = ["taskset", "-c", str(cpu), *cmd]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    admin = Admin(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + startup_timeout_s
        while not admin.health():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"openai_sim did not start (exit code {proc.poll()})")
            time.sleep(0.05)
        yield RunningSim(base_url=f"http://127.0.0.1:{port}/v1", admin=admin, process=proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
