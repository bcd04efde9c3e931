"""Private infrastructure for the fault tests: the things a test kills are its own.

- ``kafka_single`` — one KRaft node (broker + controller), RF 1.
- ``kafka_trio`` — three KRaft nodes on loopback, topics RF 3 with ``min.insync.replicas=2``.
- ``own_pg`` — a private PostgreSQL cluster (migrated, with the ``test_effects`` table) that a
  test may stop with ``pg_ctl stop -m immediate`` and start again on the same port and data dir.
- :func:`whole_system` — every service as a real process (tests.harness.system) for the
  whole-system fault tests; the tail of every service log is printed when the test fails.

Each prints its start-to-ready time past pytest's capture (``[faults] ...``), the figure the
issue notes ask for. Tests that kill nothing else use the session fixtures for the rest.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from gen_common import migrate
from gen_devstack import kafka_local, pg_local

from tests.harness import counting_consumer
from tests.harness.system import System, open_system

HEAP_MB = 512


def announce(line: str) -> None:
    if sys.__stderr__ is not None:
        sys.__stderr__.write(f"\n[faults] {line}\n")


def _kafka(tmp_path: Path, nodes: int) -> Iterator[kafka_local.Cluster]:
    cluster = kafka_local.Cluster(tmp_path / f"kafka-{nodes}", nodes=nodes, heap_mb=HEAP_MB)
    try:
        took = cluster.start()
        announce(f"Kafka x{nodes} ready on {cluster.bootstrap_servers} in {took:.1f}s")
        yield cluster
    finally:
        # A throwaway cluster: SIGKILL is enough, and a 3-node SIGTERM can take 20 s.
        for node in cluster.members:
            cluster.kill(node)


@pytest.fixture
def kafka_single(tmp_path: Path) -> Iterator[kafka_local.Cluster]:
    yield from _kafka(tmp_path, 1)


@pytest.fixture
def kafka_trio(tmp_path: Path) -> Iterator[kafka_local.Cluster]:
    yield from _kafka(tmp_path, 3)


@pytest.fixture
async def own_pg() -> AsyncIterator[pg_local.Cluster]:
    # Not tmp_path: as root the server runs as ``postgres``, which must traverse the directory.
    with tempfile.TemporaryDirectory(prefix="gen-faults-pg-") as tmp:
        cluster = pg_local.Cluster(Path(tmp))
        cluster.init()
        with (cluster.data / "postgresql.conf").open("a") as conf:
            conf.write("track_commit_timestamp = on\n")  # tells pre-crash rows from later ones
        try:
            took = cluster.start()
            announce(f"PostgreSQL ready at {cluster.url} in {took:.1f}s")
            conn = await asyncpg.connect(cluster.url)
            try:
                await migrate.apply(conn)
                await conn.execute(counting_consumer.TABLE)
            finally:
                await conn.close()
            yield cluster
        finally:
            cluster.stop("immediate")


def _pg_ctl(cluster: pg_local.Cluster, *args: str) -> None:
    cmd = [str(pg_local.bindir() / "pg_ctl"), "-D", str(cluster.data), *args]
    if cluster.run_as:
        cmd = ["runuser", "-u", cluster.run_as, "--", *cmd]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def restart_through_recovery(cluster: pg_local.Cluster, *, refusing_s: float) -> None:
    """Start a crashed cluster again (same port, same data directory) but keep it in recovery,
    answering every connection with 57P03 "not accepting connections" for ``refusing_s``
    seconds, then let it finish. This stretches the window that crash recovery opens anyway
    (57P03 "starting up"), so that clients meet it on every run, not by chance.
    """
    signal_file = cluster.data / "standby.signal"
    signal_file.touch()
    if cluster.run_as:
        entry = pwd.getpwnam(cluster.run_as)
        os.chown(signal_file, entry.pw_uid, entry.pw_gid)
    log = str(cluster.home / "server.log")
    _pg_ctl(cluster, "-l", log, "-o", f"-p {cluster.port} -c hot_standby=off", "-w", "start")
    time.sleep(refusing_s)  # the fault's length, not a synchronisation
    _pg_ctl(cluster, "-w", "promote")


@asynccontextmanager
async def whole_system(
    root: Path,
    *,
    db_url: str,
    bootstrap: str,
    sim_config: dict[str, Any] | None = None,
    overrides: Mapping[str, Mapping[str, str]] | None = None,
    replication: int = 1,
) -> AsyncIterator[System]:
    """Every service as a real process; on failure, the end of each service log is shown."""
    async with open_system(
        db_url=db_url,
        bootstrap=bootstrap,
        root=root,
        sim_config=sim_config,
        overrides=overrides,
        replication=replication,
    ) as system:
        try:
            yield system
        except BaseException:
            announce(f"service logs in {root}:\n{system.tails(40)}")
            raise
