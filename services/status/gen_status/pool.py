"""The status service's asyncpg pool: gen_common.db's, minus the per-release reset query.

asyncpg runs ``SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`` every time a
connection goes back to the pool: a second round trip for every poll. This service keeps no
session state (no SET, LISTEN, advisory locks or cursors outside transactions), so releases skip
it; asyncpg still rolls back a transaction left open. JSON codecs are the same as gen_common.db's.
(Proposed for the lead: a ``reset`` keyword on gen_common.db.open_pool would make this module go.)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import orjson
from gen_common.errors import InfrastructureError
from gen_common.settings import DbSettings


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


async def _init_connection(conn: asyncpg.Connection) -> None:
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name, encoder=_dumps, decoder=orjson.loads, schema="pg_catalog"
        )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release hook: nothing to reset (see the module docstring)."""


@asynccontextmanager
async def open_pool(settings: DbSettings, *, wait_s: float = 30.0) -> AsyncIterator[asyncpg.Pool]:
    """Open the pool, retrying the first connection for up to ``wait_s`` seconds."""
    deadline = asyncio.get_running_loop().time() + wait_s
    while True:
        try:
            pool = await asyncpg.create_pool(
                settings.url.get_secret_value(),
                min_size=settings.pool_min,
                max_size=settings.pool_max,
                command_timeout=settings.command_timeout_s,
                init=_init_connection,
                reset=_keep_session,
            )
            break
        except (OSError, asyncpg.CannotConnectNowError) as exc:
            if asyncio.get_running_loop().time() > deadline:
                raise InfrastructureError(f"PostgreSQL unreachable: {exc}") from exc
            await asyncio.sleep(0.5)
    try:
        yield pool
    finally:
        await pool.close()
