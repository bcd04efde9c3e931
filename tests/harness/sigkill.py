"""SIGKILL a child process that talks to PostgreSQL, then wait until the server has ended every
session of it: from then on, each transaction the process had sent has committed or rolled back,
so what the database holds is what the killed process left behind."""

from __future__ import annotations

import signal
import time

import asyncpg
import psutil

from tests.harness.processes import Child, eventually


def pg_sessions(child: Child, pg_port: int) -> set[int]:
    """Local ports of the child's PostgreSQL connections (= pg_stat_activity.client_port)."""
    assert child.proc is not None
    conns = psutil.Process(child.proc.pid).net_connections(kind="tcp")
    return {c.laddr.port for c in conns if c.raddr and c.raddr.port == pg_port}


async def sigkill_and_settle(pool: asyncpg.Pool, child: Child, *, timeout: float = 30) -> float:
    """SIGKILL ``child`` and wait until its sessions are gone; the kill's time (epoch seconds)."""
    pg_port = int(await pool.fetchval("SELECT inet_server_port()"))
    ports = pg_sessions(child, pg_port)
    assert ports, f"no PostgreSQL connection of {child.module} found"
    killed_at = time.time()
    child.send(signal.SIGKILL)
    child.wait(10)

    async def sessions_gone() -> bool:
        n = await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE client_port = ANY($1::int[])", list(ports)
        )
        return int(n) == 0

    await eventually(sessions_gone, timeout=timeout)
    return killed_at
