"""Where the tests' PostgreSQL and Kafka come from, in this order of preference.

1. An existing server named by the environment (``DB__URL``, ``KAFKA__BOOTSTRAP_SERVERS``).
2. testcontainers, when a Docker engine answers.
3. A private PostgreSQL cluster and a real Apache Kafka node started on loopback
   (gen_devstack), which needs neither Docker nor a system service.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from gen_devstack import kafka_local, pg_local

Announce = Callable[[str], None]


def _to_stderr(line: str) -> None:
    sys.stderr.write(f"[infra] {line}\n")


def docker_available() -> bool:
    try:
        import docker
    except ImportError:
        return False
    if not Path("/var/run/docker.sock").exists() and "DOCKER_HOST" not in os.environ:
        return False
    client = None
    try:
        client = docker.from_env(timeout=3)
        client.ping()
    except Exception:
        return False
    finally:
        if client is not None:
            client.close()
    return True


@contextlib.contextmanager
def postgres(announce: Announce = _to_stderr) -> Iterator[str]:
    """Yield a PostgreSQL URL for the test session."""
    if url := os.environ.get("DB__URL"):
        yield url
        return
    if docker_available():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16", driver=None) as container:
            yield container.get_connection_url()
        return
    with tempfile.TemporaryDirectory(prefix="gen-pg-") as tmp:
        cluster = pg_local.Cluster(Path(tmp))
        took = cluster.start()
        announce(f"PostgreSQL {pg_local.bindir()} started at {cluster.url} in {took:.1f}s")
        try:
            yield cluster.url
        finally:
            cluster.stop("immediate")


@contextlib.contextmanager
def kafka(nodes: int = 1, announce: Announce = _to_stderr) -> Iterator[kafka_local.Cluster | str]:
    """Yield a running local cluster, or a bootstrap string for an external broker."""
    if nodes == 1 and (servers := os.environ.get("KAFKA__BOOTSTRAP_SERVERS")):
        yield servers
        return
    if nodes == 1 and docker_available():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer("confluentinc/cp-kafka:7.9.0").with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    with tempfile.TemporaryDirectory(prefix="gen-kafka-") as tmp:
        cluster = kafka_local.Cluster(Path(tmp), nodes=nodes, heap_mb=1024 if nodes == 1 else 512)
        took = cluster.start()
        jar = next(kafka_local.ensure_jars().glob("kafka_2.13-*.jar")).name
        announce(f"Apache Kafka {jar} x{nodes} ready on {cluster.bootstrap_servers} in {took:.1f}s")
        try:
            yield cluster
        finally:
            cluster.stop()
