import asyncio

import asyncpg
import pytest
from gen_common import migrate

pytestmark = pytest.mark.pg


async def _fresh_database(pg_url: str, name: str) -> str:
    admin = await asyncpg.connect(pg_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return pg_url.rsplit("/", 1)[0] + f"/{name}"


async def test_migrations_apply_once_and_twice_is_a_no_op(pg_url: str, unique: str) -> None:
    url = await _fresh_database(pg_url, f"m{unique}")
    conn = await asyncpg.connect(url)
    try:
        first = await migrate.apply(conn)
        second = await migrate.apply(conn)
        versions = await conn.fetchval("SELECT count(*) FROM schema_migrations")
    finally:
        await conn.close()
    assert first == [m.name for m in migrate.discover()]
    assert second == []
    assert versions == len(first)


async def test_two_concurrent_migrators_do_not_collide(pg_url: str, unique: str) -> None:
    url = await _fresh_database(pg_url, f"c{unique}")
    conns = [await asyncpg.connect(url) for _ in range(2)]
    try:
        results = await asyncio.gather(*(migrate.apply(c) for c in conns))
        rows = await conns[0].fetch("SELECT version FROM schema_migrations ORDER BY version")
    finally:
        for c in conns:
            await c.close()
    applied = sorted(results, key=len)
    assert applied[0] == []
    assert applied[1] == [m.name for m in migrate.discover()]
    assert [r["version"] for r in rows] == [m.version for m in migrate.discover()]


def test_migration_files_are_numbered_uniquely() -> None:
    found = migrate.discover()
    assert [m.version for m in found] == sorted({m.version for m in found})
