"""A private PostgreSQL cluster from Debian's binaries: initdb in a directory, a free port.

Nothing relies on a system service. As root (CI machines), the server runs as the ``postgres``
system user that Debian's package creates, since PostgreSQL refuses to run as root.

    python -m gen_devstack.pg_local start --dir .run/pg --port 55432
    python -m gen_devstack.pg_local stop --dir .run/pg
    python -m gen_devstack.pg_local url --dir .run/pg --port 55432 --database bench_sync

Clients on this machine reach it by its Unix socket (``Cluster.local_url``, what ``url``
prints): per statement, half the client CPU of loopback TCP, measured with asyncpg here.
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from gen_devstack.ports import free_port, wait_for_port

REPO = Path(__file__).resolve().parents[3]
SOCKET_PATH_MAX = 107  # sun_path is 108 bytes with the terminating NUL


def bindir() -> Path:
    """The newest Debian PostgreSQL bin directory, or the one on PATH."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if candidates:
        return candidates[-1].parent
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise FileNotFoundError("PostgreSQL binaries not found: apt-get install -y postgresql")


@dataclass
class Cluster:
    home: Path
    port: int = 0
    user: str = "gen"
    database: str = "gen"

    def __post_init__(self) -> None:
        self.port = self.port or free_port()
        self.run_as = "postgres" if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"

    @property
    def socket_dir(self) -> Path | None:
        """The server's Unix socket directory (``home/socket``), or None when the socket's path
        would pass the kernel's 107-byte limit: the server listens on loopback TCP only then."""
        directory = self.home.resolve() / "socket"
        return directory if len(f"{directory}/.s.PGSQL.{self.port}") <= SOCKET_PATH_MAX else None

    @property
    def local_url(self) -> str:
        """The URL for clients on this machine: the Unix socket where there is one (half the
        client CPU of loopback TCP per statement), else :attr:`url`."""
        if self.socket_dir is None:
            return self.url
        return f"postgresql://{self.user}@/{self.database}?host={self.socket_dir}&port={self.port}"

    @property
    def data(self) -> Path:
        return self.home / "data"

    def _cmd(self, *args: str) -> list[str]:
        return ["runuser", "-u", self.run_as, "--", *args] if self.run_as else list(args)

    def _own(self, path: Path) -> None:
        if self.run_as:
            entry = pwd.getpwnam(self.run_as)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def init(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self._own(self.home)
        if (self.data / "PG_VERSION").exists():
            return
        subprocess.run(
            self._cmd(
                str(bindir() / "initdb"),
                "-D",
                str(self.data),
                "-U",
                self.user,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                "\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n"
                "fsync = on\nsynchronous_commit = on\nmax_connections = 300\n"
                "shared_buffers = 256MB\nlog_min_messages = warning\n"
            )

    def start(self, *, timeout_s: float = 60.0) -> float:
        began = time.monotonic()
        self.init()
        sockets = ""  # the server's -k: Unix socket directories ('' none)
        if self.socket_dir is not None:
            self.socket_dir.mkdir(exist_ok=True)
            self._own(self.socket_dir)
            sockets = str(self.socket_dir)
        subprocess.run(
            self._cmd(
                str(bindir() / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.home / "server.log"),
                "-o",
                f"-p {self.port} -k '{sockets}'",
                "-w",
                "-t",
                str(int(timeout_s)),
                "start",
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        wait_for_port(self.port, timeout_s=timeout_s)
        self._create_database()
        return time.monotonic() - began

    def _create_database(self) -> None:
        psql = [
            str(bindir() / "psql"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            self.user,
            "-d",
            "postgres",
            "-tAc",
        ]
        exists = subprocess.run(
            [*psql, f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        if not exists:
            subprocess.run(
                [*psql, f'CREATE DATABASE "{self.database}"'], check=True, stdout=subprocess.DEVNULL
            )

    def stop(self, mode: str = "fast") -> None:
        subprocess.run(
            self._cmd(str(bindir() / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"),
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="pg_local")
    parser.add_argument("action", choices=["start", "stop", "url"])
    parser.add_argument("--dir", type=Path, default=REPO / ".run" / "pg")
    parser.add_argument("--port", type=int, default=55432)
    parser.add_argument("--database", default="gen", help="url: the database the URL names")
    args = parser.parse_args(argv)
    cluster = Cluster(args.dir, port=args.port, database=args.database)
    if args.action == "stop":
        cluster.stop()
        return 0
    if args.action == "url":
        print(cluster.local_url)  # noqa: T201
        return 0
    took = cluster.start()
    print(f"PostgreSQL ready at {cluster.local_url} in {took:.1f}s")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(_cli(sys.argv[1:]))
