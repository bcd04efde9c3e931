"""gen_common.db: the pool closes within its bound even when a connection is never released."""

from __future__ import annotations

import time

import asyncpg
import pytest
from gen_common import db
from gen_common.settings import DbSettings

pytestmark = pytest.mark.pg


async def test_close_is_bounded_when_a_connection_is_never_released(migrated: str) -> None:
    started = time.monotonic()
    async with db.open_pool(DbSettings(url=migrated), close_timeout_s=0.5) as pool:
        held = await pool.acquire()  # never released: pool.close() alone would wait forever
        assert await held.fetchval("SELECT 1") == 1
    assert time.monotonic() - started < 5
    with pytest.raises(asyncpg.InterfaceError):  # terminated, not left open
        await held.fetchval("SELECT 1")
