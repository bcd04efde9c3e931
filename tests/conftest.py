"""Session fixtures: real PostgreSQL (migrated once) and a real Kafka broker, unique names per test.

Tests build settings with :func:`make_settings` and never touch ``os.environ``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import asyncpg
import pytest
from gen_common import db, migrate
from gen_common.settings import DbSettings, KafkaSettings, ServiceSettings
from gen_devstack import kafka_local
from pydantic import SecretStr

from tests.harness import infra


def _announcer(config: pytest.Config) -> Callable[[str], None]:
    """Write past pytest's output capture, so the log shows the real infrastructure starting."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")

    def announce(line: str) -> None:
        if reporter is None or capture is None:
            return
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"[infra] {line}")

    return announce


@pytest.fixture(scope="session")
def pg_url(pytestconfig: pytest.Config) -> Iterator[str]:
    with infra.postgres(_announcer(pytestconfig)) as url:
        yield url


@pytest.fixture(scope="session")
def kafka_cluster(pytestconfig: pytest.Config) -> Iterator[kafka_local.Cluster | str]:
    with infra.kafka(announce=_announcer(pytestconfig)) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_cluster: kafka_local.Cluster | str) -> str:
    if isinstance(kafka_cluster, str):
        return kafka_cluster
    return kafka_cluster.bootstrap_servers


@pytest.fixture(scope="session")
async def migrated(pg_url: str) -> str:
    conn = await asyncpg.connect(pg_url)
    try:
        await migrate.apply(conn)
    finally:
        await conn.close()
    return pg_url


@pytest.fixture(scope="session")
async def pool(migrated: str) -> AsyncIterator[asyncpg.Pool]:
    async with db.open_pool(DbSettings(url=SecretStr(migrated), pool_max=20)) as p:
        yield p


@pytest.fixture
def unique() -> str:
    """A short id for this test's topics, groups and rows."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def kafka_settings(kafka_bootstrap: str, unique: str) -> KafkaSettings:
    return KafkaSettings(
        bootstrap_servers=kafka_bootstrap, topic_prefix=f"t{unique}.", partitions=3
    )


MakeSettings = Callable[..., Any]


@pytest.fixture
def make_settings(migrated: str, kafka_settings: KafkaSettings) -> MakeSettings:
    """Build any ServiceSettings subclass wired to this session's PostgreSQL and Kafka."""

    def build(cls: type[ServiceSettings] = ServiceSettings, **overrides: Any) -> Any:
        values: dict[str, Any] = {
            "env": "test",
            "db": DbSettings(url=SecretStr(migrated)),
            "kafka": kafka_settings,
        }
        values.update(overrides)
        return cls(**values)

    return build
