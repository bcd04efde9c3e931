"""PostgreSQL access: one asyncpg pool per process, JSON codecs installed on every connection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeAlias

import asyncpg
import orjson
from asyncpg.pool import PoolConnectionProxy

from gen_common.errors import InfrastructureError
from gen_common.settings import DbSettings

Pool: TypeAlias = asyncpg.Pool
# What handlers and stores receive: a plain connection or one acquired from the pool.
Conn: TypeAlias = asyncpg.Connection | PoolConnectionProxy

# The database is (for now) out of reach: a lost or refused connection, a server shutting down or
# starting up (SQLSTATE class 57), asyncpg's own "connection closed mid-operation", a full server.
# Long-running loops catch exactly this, wait and go on; the work stays in PostgreSQL.
DB_TROUBLE: tuple[type[Exception], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.TooManyConnectionsError,
    asyncpg.exceptions.OperatorInterventionError,  # includes CannotConnectNowError (57P03)
    asyncpg.InterfaceError,
)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


async def _init_connection(conn: asyncpg.Connection) -> None:
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name, encoder=_dumps, decoder=orjson.loads, schema="pg_catalog"
        )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release hook for pools whose users keep no session state (see ``open_pool``)."""


@asynccontextmanager
async def open_pool(
    settings: DbSettings,
    *,
    wait_s: float = 30.0,
    reset_on_release: bool = True,
    close_timeout_s: float = 10.0,
) -> AsyncIterator[asyncpg.Pool]:
    """Open the pool, retrying the first connection for up to ``wait_s`` seconds.

    ``reset_on_release=False`` skips asyncpg's per-release ``RESET ALL; UNLISTEN *; ...`` round
    trip; only for services that keep no session state (no SET, LISTEN, advisory locks or
    cursors outside transactions). asyncpg still rolls back a transaction left open.
    """
    deadline = asyncio.get_running_loop().time() + wait_s
    while True:
        try:
            pool = await asyncpg.create_pool(
                settings.url.get_secret_value(),
                min_size=settings.pool_min,
                max_size=settings.pool_max,
                command_timeout=settings.command_timeout_s,
                init=_init_connection,
                reset=None if reset_on_release else _keep_session,
            )
            break
        except (OSError, asyncpg.CannotConnectNowError) as exc:
            if asyncio.get_running_loop().time() > deadline:
                raise InfrastructureError(f"PostgreSQL unreachable: {exc}") from exc
            await asyncio.sleep(0.5)
    try:
        yield pool
    finally:
        try:
            # Bounded: a connection stuck in asyncpg's release (waiting on a cancel request to a
            # dead server) must not keep a stopping process alive.
            await asyncio.wait_for(pool.close(), close_timeout_s)
        except TimeoutError:
            pool.terminate()


@asynccontextmanager
async def transaction(pool: asyncpg.Pool) -> AsyncIterator[Conn]:
    """Acquire a connection and run the block in one transaction."""
    async with pool.acquire() as conn, conn.transaction():
        yield conn
