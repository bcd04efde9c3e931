"""Fixtures of the status tests: the app over real PostgreSQL/Kafka, and job/lot rows."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
from gen_status.app import create_app
from gen_status.settings import StatusOptions, StatusSettings
from pydantic import SecretStr

KEY = "test-key"
InsertJob = Callable[..., Awaitable[uuid.UUID]]
InsertLot = Callable[..., Awaitable[None]]
Client = Callable[..., Any]

JOB_DEFAULTS: dict[str, Any] = {
    "client_id": "status-tests",
    "mode": "batch",
    "status": "processing",
    "languages": ["en", "ru"],
    "total_lots": 2,
    "completed_lots": 0,
    "failed_lots": 0,
    "created_at": datetime(2025, 8, 5, 20, 28, 57, 827452, tzinfo=UTC),
    "updated_at": datetime(2025, 8, 5, 20, 29, 0, tzinfo=UTC),
}


@pytest.fixture
def status_settings(make_settings: Any) -> Callable[..., StatusSettings]:
    def build(**options: Any) -> StatusSettings:
        opts = StatusOptions(shared_key=SecretStr(KEY), **options)
        settings: StatusSettings = make_settings(StatusSettings, status=opts)
        return settings

    return build


@pytest.fixture
async def open_client(
    status_settings: Callable[..., StatusSettings],
) -> AsyncIterator[Callable[..., Any]]:
    """Open clients on apps built with the given options (lifespan run for real)."""
    async with AsyncExitStack() as stack:

        async def opener(**options: Any) -> httpx.AsyncClient:
            app = create_app(status_settings(**options))
            await stack.enter_async_context(app.router.lifespan_context(app))
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            return await stack.enter_async_context(
                httpx.AsyncClient(transport=transport, base_url="http://status")
            )

        yield opener


@pytest.fixture
async def client(open_client: Callable[..., Any]) -> httpx.AsyncClient:
    result: httpx.AsyncClient = await open_client()
    return result


@pytest.fixture
def insert_job(pool: asyncpg.Pool) -> InsertJob:
    async def insert(job_id: uuid.UUID | None = None, **values: Any) -> uuid.UUID:
        row = {**JOB_DEFAULTS, **values, "job_id": job_id or uuid.uuid4()}
        columns = ", ".join(row)
        params = ", ".join(f"${i}" for i in range(1, len(row) + 1))
        await pool.execute(
            f"INSERT INTO jobs ({columns}) VALUES ({params})",
            *row.values(),
        )
        return uuid.UUID(str(row["job_id"]))

    return insert


@pytest.fixture
def insert_lot(pool: asyncpg.Pool) -> InsertLot:
    async def insert(job_id: uuid.UUID, lot_seq: int, **values: Any) -> None:
        row = {"lot_id": f"L{lot_seq}", "status": "pending", **values}
        row.update(job_id=job_id, lot_seq=lot_seq)
        columns = ", ".join(row)
        params = ", ".join(f"${i}" for i in range(1, len(row) + 1))
        await pool.execute(
            f"INSERT INTO lots ({columns}) VALUES ({params})",
            *row.values(),
        )

    return insert
