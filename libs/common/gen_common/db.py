"""PostgreSQL access: one asyncpg pool per process, JSON codecs installed on every connection."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg
import orjson
from asyncpg.pool import PoolAcquireContext, PoolConnectionProxy
from asyncpg.transaction import Transaction

from gen_common.errors import InfrastructureError
from gen_common.settings import DbSettings

log = logging.getLogger(__name__)

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


async def _light_reset(conn: asyncpg.Connection) -> None:
    """The release reset of ``open_pool``'s default: asyncpg has already rolled back a transaction
    left open and dropped the Python-side listeners; a connection that ever LISTENed also gets
    ``UNLISTEN *``. No round trip for the rest, which is nearly every release."""
    if getattr(conn, "_listened", False):
        await conn.execute("UNLISTEN *")
        conn._listened = False  # type: ignore[attr-defined]


# A cleanup that fails must not replace the exception that caused it. asyncpg lets both of its
# context managers do so: a failed ROLLBACK (``conn.transaction()``) or a failed release reset
# (``pool.acquire()``) raises a connection error out of ``__aexit__`` in place of the block's own
# exception, a task's CancelledError included. A loop that then catches DB_TROUBLE swallows
# its own cancellation and runs on (faults D3: vision's lease renewer, cancelled while the fault
# proxy reset its connection, kept renewing forever and its worker waited for it forever).
if TYPE_CHECKING:
    _PoolBase = asyncpg.Pool[asyncpg.Record]
    _ConnectionBase = asyncpg.Connection[asyncpg.Record]
else:
    _PoolBase, _ConnectionBase = asyncpg.Pool, asyncpg.Connection


class _Transaction(Transaction):
    """asyncpg's transaction block; a ROLLBACK that fails terminates the connection (so the
    server rolls back) and the block's own exception goes on. A failed COMMIT still raises."""

    __slots__ = ()

    async def __aexit__(self, extype: object, ex: object, tb: object) -> None:
        try:
            await super().__aexit__(extype, ex, tb)
        except Exception as failure:
            if extype is None:
                raise
            log.info("rollback failed; connection terminated", extra={"error": repr(failure)})
            block: Any = self  # asyncpg's ConnectionResource attributes, not in the stubs
            conn = block._connection
            if conn._pool_release_ctr == block._con_release_ctr:  # not handed to someone else
                conn.terminate()


class _Connection(_ConnectionBase):
    __slots__ = ("_listened",)

    async def add_listener(self, channel: str, callback: Any) -> None:
        self._listened = True  # before LISTEN: a failure half-way still gets its UNLISTEN *
        await super().add_listener(channel, callback)

    def transaction(
        self,
        *,
        isolation: Any = None,
        readonly: bool = False,
        deferrable: bool = False,
    ) -> Transaction:
        self._check_open()  # type: ignore[attr-defined]
        return _Transaction(self, isolation, readonly, deferrable)


class _Pool(_PoolBase):
    """asyncpg's pool with bounds: ``acquire`` waits at most ``acquire_timeout`` (then
    TimeoutError, one of DB_TROUBLE); ``release`` resets the connection within
    ``release_timeout``, and a reset that fails or runs out terminates the connection (asyncpg
    does that) and is logged, never raised: the caller's work is done, and its exception (or
    cancellation) is the one that goes on."""

    __slots__ = ("_acquire_timeout", "_release_timeout")
    _acquire_timeout: float | None
    _release_timeout: float

    def acquire(self, *, timeout: float | None = None) -> PoolAcquireContext[asyncpg.Record]:
        return super().acquire(timeout=self._acquire_timeout if timeout is None else timeout)

    async def release(
        self,
        connection: PoolConnectionProxy[asyncpg.Record],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - asyncpg's signature
    ) -> None:
        budget = self._release_timeout if timeout is None else timeout
        # Our own shield around asyncpg's: if the caller is cancelled meanwhile, the release still
        # finishes, and its failure is still logged (not "Task exception was never retrieved").
        released = asyncio.ensure_future(super().release(connection, timeout=budget))
        released.add_done_callback(_note_failed_release)
        with contextlib.suppress(Exception):
            await asyncio.shield(released)


def _note_failed_release(released: asyncio.Future[None]) -> None:
    """A lost connection's failed reset is routine (INFO: its loss shows in the caller's own
    errors); a reset that ran out of time is news (WARNING)."""
    if not released.cancelled() and (failure := released.exception()) is not None:
        log.log(
            logging.WARNING if isinstance(failure, TimeoutError) else logging.INFO,
            "connection reset on release failed; connection terminated",
            extra={"error": repr(failure)},
        )


@asynccontextmanager
async def open_pool(
    settings: DbSettings,
    *,
    wait_s: float = 30.0,
    reset_on_release: bool = False,
    close_timeout_s: float = 10.0,
) -> AsyncIterator[asyncpg.Pool]:
    """Open the pool, retrying the first connection for up to ``wait_s`` seconds.

    A released connection is rolled back if a transaction was left open and UNLISTENs if it
    ever LISTENed; asyncpg's full per-release ``RESET ALL; UNLISTEN *; CLOSE ALL; SELECT
    pg_advisory_unlock_all()`` round trip (a third of all statements the pipeline sent) runs only
    with ``reset_on_release=True``, for users of session state beyond LISTEN (SET, session
    advisory locks, cursors outside transactions: the migration runner).

    Every wait is bounded (``DbSettings``): a statement by ``command_timeout_s``;
    ``pool.acquire()`` by ``acquire_timeout_s`` (TimeoutError, one of DB_TROUBLE); the reset on
    release by ``release_timeout_s`` (default ``command_timeout_s``), after which the connection
    is terminated. A failed release or ROLLBACK never replaces the block's exception (see _Pool).
    """
    deadline = asyncio.get_running_loop().time() + wait_s
    while True:
        try:
            pool = _Pool(
                settings.url.get_secret_value(),
                min_size=settings.pool_min,
                max_size=settings.pool_max,
                max_queries=50_000,  # asyncpg.create_pool's defaults
                max_inactive_connection_lifetime=300.0,
                loop=None,
                connection_class=_Connection,
                record_class=asyncpg.Record,
                command_timeout=settings.command_timeout_s,
                init=_init_connection,
                reset=None if reset_on_release else _light_reset,
            )
            pool._acquire_timeout = settings.acquire_timeout_s
            pool._release_timeout = settings.release_timeout_s or settings.command_timeout_s
            await pool
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
