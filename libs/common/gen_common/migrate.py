"""Numbered, forward-only SQL migrations, applied in order under an advisory lock.

Files live in ``gen_common/migrations/NNNN_name.sql``. Each is applied once, in its own
transaction, and recorded in ``schema_migrations``. Concurrent migrators queue on the lock, so
running ``python -m gen_common.migrate`` from several places at once is safe.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources

from gen_common import db, service
from gen_common.db import Conn
from gen_common.settings import ServiceSettings

log = logging.getLogger(__name__)
LOCK_ID = 0x67656E5F6D6967  # "gen_mig"
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def discover() -> list[Migration]:
    found = []
    for entry in resources.files("gen_common.migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), entry.name, entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration numbers: {versions}")
    return found


async def apply(conn: Conn, migrations: list[Migration] | None = None) -> list[str]:
    """Apply every pending migration; returns the names applied."""
    todo = discover() if migrations is None else migrations
    await conn.execute("SELECT pg_advisory_lock($1)", LOCK_ID)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version    integer PRIMARY KEY,
                   name       text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        applied = []
        for migration in todo:
            if migration.version in done:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
            log.info("applied migration", extra={"migration": migration.name})
            applied.append(migration.name)
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_ID)


async def run(settings: ServiceSettings) -> None:
    # A session advisory lock: the full reset on release, should an unlock ever be missed.
    async with db.open_pool(settings.db, reset_on_release=True) as pool, pool.acquire() as conn:
        applied = await apply(conn)
    log.info("migrations up to date", extra={"applied": applied})


def main() -> None:
    settings = ServiceSettings()
    service.run(run(settings), settings.log, name="migrate")


if __name__ == "__main__":
    main()
