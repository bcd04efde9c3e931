"""The private PostgreSQL cluster of the local stack and the tests (gen_devstack.pg_local)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import asyncpg
import pytest
from gen_devstack import pg_local

pytestmark = pytest.mark.pg


async def test_local_clients_reach_the_cluster_by_its_unix_socket() -> None:
    with tempfile.TemporaryDirectory(prefix="gen-pg-") as home:
        cluster = pg_local.Cluster(Path(home))
        cluster.start()
        try:
            assert cluster.local_url.startswith(f"postgresql://gen@/gen?host={home}")
            by_socket = await asyncpg.connect(cluster.local_url)
            by_tcp = await asyncpg.connect(cluster.url)
            try:
                assert await by_socket.fetchval("SELECT inet_client_addr()") is None  # a socket
                assert str(await by_tcp.fetchval("SELECT inet_client_addr()")) == "127.0.0.1"
            finally:
                await by_socket.close()
                await by_tcp.close()
        finally:
            cluster.stop("immediate")


def test_a_socket_path_past_the_kernel_limit_falls_back_to_tcp() -> None:
    cluster = pg_local.Cluster(Path("/tmp") / ("d" * 90), port=55432)
    assert cluster.socket_dir is None
    assert cluster.local_url == cluster.url == "postgresql://gen@127.0.0.1:55432/gen"
