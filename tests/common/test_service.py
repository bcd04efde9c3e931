"""gen_common.service.run: the loop every service runs on, signals and exit codes."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import asyncio, sys
from gen_common import service
from gen_common.settings import LogSettings

async def main() -> None:
    print(type(asyncio.get_running_loop()).__module__, flush=True)
    try:
        if sys.argv[1] == "wait":
            await asyncio.Event().wait()
        elif sys.argv[1] == "crash":
            raise RuntimeError("boom")
    finally:
        print("finally ran", flush=True)

service.run(main(), LogSettings(), name="test")
"""


def _start(tmp_path: Path, mode: str) -> subprocess.Popen[str]:
    script = tmp_path / "svc.py"
    script.write_text(SCRIPT)
    return subprocess.Popen(
        [sys.executable, str(script), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def test_a_service_runs_on_uvloop_and_exits_0(tmp_path: Path) -> None:
    proc = _start(tmp_path, "return")
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert out.splitlines() == ["uvloop", "finally ran"]


def test_sigterm_cancels_the_service_cleanly(tmp_path: Path) -> None:
    proc = _start(tmp_path, "wait")
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "uvloop"  # the signal handlers are set by now
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert out.splitlines() == ["finally ran"]


def test_a_crash_exits_1(tmp_path: Path) -> None:
    proc = _start(tmp_path, "crash")
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert out.splitlines() == ["uvloop", "finally ran"]
