"""Run project code as real child processes, so tests can SIGKILL, SIGSTOP and SIGTERM it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def settings_env(**values: str) -> dict[str, str]:
    """The child's environment: ours, plus settings given as ``KAFKA__BOOTSTRAP_SERVERS=...``."""
    env = {k: v for k, v in os.environ.items() if "__" not in k}
    env.update({"ENV": "test", "LOG__JSON_FORMAT": "true", "PYTHONUNBUFFERED": "1"})
    env.update(values)
    return env


class Child:
    def __init__(self, module: str, env: Mapping[str, str], log: Path) -> None:
        self.module = module
        self.env = dict(env)
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Child:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", self.module],
                cwd=REPO,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def send(self, sig: signal.Signals) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def kill(self) -> None:
        self.send(signal.SIGKILL)
        self.wait(10)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 20) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.send(signal.SIGCONT)
        self.send(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None


@contextmanager
def child(module: str, env: Mapping[str, str], log: Path) -> Iterator[Child]:
    proc = Child(module, env, log).start()
    try:
        yield proc
    finally:
        proc.stop()


def wait_until(predicate: object, *, timeout: float, interval: float = 0.05) -> None:
    """Poll a zero-argument callable until it returns truthy."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        time.sleep(interval)


async def eventually(
    check: Callable[[], Awaitable[bool]], *, timeout: float, interval: float = 0.05
) -> None:
    """Await ``check()`` until it is true, failing after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)
