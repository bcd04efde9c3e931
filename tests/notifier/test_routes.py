"""Monitoring numbers (contract §7.5), replay routes, /health, /metrics, JSON errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
from gen_common.db import Conn
from gen_notifier import monitor
from gen_notifier.routes import create_app
from gen_notifier.schedule import ManualClock
from gen_notifier.settings import NotifierSettings

from tests.conftest import MakeSettings
from tests.notifier.conftest import enqueue, options

pytestmark = pytest.mark.pg


@pytest.fixture
async def client(
    pool: asyncpg.Pool, make_settings: MakeSettings, clock: ManualClock
) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(NotifierSettings, notifier=options())
    app = create_app(settings, pool=pool, clock=clock)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://notifier") as c:
        yield c


async def seed(conn: Conn) -> None:
    """A known table: 2 delivered (1 and 3 attempts), 1 exhausted, 1 pending, 1 old delivered."""
    await conn.execute("DELETE FROM webhook_attempts")
    await conn.execute("DELETE FROM webhook_deliveries")
    ep = await conn.fetchval(
        "INSERT INTO webhook_endpoints (url) VALUES ('http://h.test/seed') RETURNING id"
    )
    now = datetime.now(UTC)
    rows = [
        ("delivered", 1, now - timedelta(minutes=10), now - timedelta(minutes=9)),
        ("delivered", 3, now - timedelta(minutes=30), now - timedelta(minutes=27)),
        ("exhausted", 8, now - timedelta(hours=5), None),
        ("queued", 2, now - timedelta(hours=30), None),
        ("delivered", 1, now - timedelta(hours=30), now - timedelta(hours=30)),
    ]
    for i, (status, attempts, created, delivered) in enumerate(rows):
        await conn.execute(
            """INSERT INTO webhook_deliveries (msg_id, endpoint_id, kind, body, status, attempts,
                   created_at, delivered_at)
               VALUES ($1, $2, 'completion', '\\x7b7d', $3, $4, $5, $6)""",
            f"msg_seed{i}",
            ep,
            status,
            attempts,
            created,
            delivered,
        )


async def test_metrics_formulas(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            await conn.execute("DELETE FROM webhook_attempts")
            await conn.execute("DELETE FROM webhook_deliveries")
            empty = await monitor.report(conn)
            assert (empty["health_score"], empty["health_status"]) == (100.0, "healthy")
            assert empty["metrics_24h"]["success_rate"] == 0.0
            await seed(conn)
            m = await monitor.metrics(conn, 24)
            report = await monitor.report(conn)
        finally:
            await tx.rollback()
    assert (m["total_webhooks"], m["delivered"], m["failed"], m["pending"]) == (3, 2, 1, 1)
    assert m["success_rate"] == 66.67
    assert m["average_retries"] == 2.0
    assert m["average_delivery_time_seconds"] == pytest.approx(120.0, abs=1)
    # rate 66.67 < 95: -20; retries 2.0 > 1.5: -5; no alert fires -> 75 degraded
    assert report["alerts"] == []
    assert (report["health_score"], report["health_status"]) == (75.0, "degraded")


async def test_routes_shapes_and_errors(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/webhook-metrics", params={"hours": "abc"})
    assert r.status_code == 200
    assert r.json()["success"] is True
    assert r.json()["metrics"]["period_hours"] == 24
    for path, key in [
        ("/api/v1/webhook-health", "report"),
        ("/api/v1/webhook-failures", "failed_webhooks"),
        ("/api/v1/webhook-endpoints", "endpoints"),
        ("/api/v1/webhook-alerts", "alerts"),
    ]:
        r = await client.get(path)
        assert r.status_code == 200, path
        assert key in r.json()
    assert (await client.get("/health")).json()["status"] == "healthy"
    assert b"notifier_attempts_total" in (await client.get("/metrics")).content
    r = await client.get("/nope")
    assert (r.status_code, r.json()) == (404, {"error": "Not Found"})
    r = await client.delete("/api/v1/webhook-metrics")
    assert r.status_code == 405
    assert "error" in r.json()
    r = await client.post("/api/v1/webhook-deliveries/replay", params={"since": "yesterday"})
    assert r.status_code == 400
    r = await client.post("/api/v1/webhook-deliveries/msg_missing/replay")
    assert (r.status_code, r.json()) == (404, {"error": "Delivery not found"})


async def test_replay_routes(
    pool: asyncpg.Pool, client: httpx.AsyncClient, clock: ManualClock
) -> None:
    o = options()
    msg_id = await enqueue(pool, o, clock, "http://127.0.0.1:9/replay")
    r = await client.post(f"/api/v1/webhook-deliveries/{msg_id}/replay")
    assert r.status_code == 409  # still pending
    await pool.execute(
        "UPDATE webhook_deliveries SET status = 'exhausted' WHERE msg_id = $1", msg_id
    )
    since = (clock.now() - timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    r = await client.post("/api/v1/webhook-deliveries/replay", params={"since": since})
    assert r.status_code == 202
    assert msg_id in r.json()["replayed"]
    row = await pool.fetchrow("SELECT * FROM webhook_deliveries WHERE msg_id = $1", msg_id)
    assert row is not None
    assert (row["status"], row["trigger"]) == ("queued", "manual")
    failures = (await client.get("/api/v1/webhook-failures", params={"limit": "500"})).json()
    assert msg_id not in {f["id"] for f in failures["failed_webhooks"]}
