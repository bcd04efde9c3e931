"""POST /api/v2/jobs: signed requests (replay, skew, keys), job resource, limits — real PG/Kafka."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import asyncpg
import orjson
import pytest
from gen_common import request_auth

from tests.ingest.conftest import Ingest, submitted

pytestmark = [pytest.mark.pg, pytest.mark.kafka]


def job(n: int = 2, **extra: Any) -> dict[str, Any]:
    lots = [
        {"lot_id": f"V2-{i}", "images": [f"https://img.example/{uuid.uuid4()}.jpg"]}
        for i in range(n)
    ]
    return {"lots": lots, "languages": ["en", "de"], **extra}


async def post(ingest: Ingest, raw: bytes, headers: dict[str, Any]) -> Any:
    return await ingest.client.post(
        "/api/v2/jobs", content=raw, headers={"Content-Type": "application/json"} | headers
    )


async def test_a_signed_job_is_created_and_published(ingest: Ingest, pool: asyncpg.Pool) -> None:
    response = await ingest.v2(job(2, webhook_url="https://client.example/done"))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "pending"
    assert body["mode"] == "realtime"
    assert body["total_lots"] == 2
    assert body["languages"] == ["en", "de"]
    assert body["created_at"].endswith("Z")
    created = datetime.fromisoformat(body["created_at"])
    assert created.tzinfo is not None
    assert abs((datetime.now(UTC) - created).total_seconds()) < 60
    assert body["links"] == {
        "self": f"/api/v2/jobs/{body['job_id']}",
        "lots": f"/api/v2/jobs/{body['job_id']}/lots",
    }
    row = await pool.fetchrow("SELECT * FROM jobs WHERE job_id = $1", uuid.UUID(body["job_id"]))
    assert row is not None
    assert row["client_id"] == ingest.client_id
    assert row["api_version"] == 2
    assert row["webhook_url"] == "https://client.example/done"
    events = await submitted(ingest.kafka, 2)
    assert {e.api_version for e in events} == {2}
    assert {e.client_id for e in events} == {ingest.client_id}


async def test_a_single_lot_is_a_job_too(ingest: Ingest) -> None:
    response = await ingest.v2(job(1))
    assert response.status_code == 201
    assert response.json()["total_lots"] == 1


async def test_a_replayed_request_is_401(ingest: Ingest) -> None:
    raw = orjson.dumps(job())
    headers = ingest.signed(raw)
    assert (await post(ingest, raw, headers)).status_code == 201
    replay = await post(ingest, raw, headers)
    assert replay.status_code == 401
    assert replay.json() == {"error": "unauthorized"}


@pytest.mark.parametrize(("skew", "status"), [(-299, 201), (299, 201), (-301, 401), (301, 401)])
async def test_clock_skew(
    ingest: Ingest, skew: int, status: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The server's clock is held still, so a slow request on a loaded machine cannot move the
    # boundary: the check sees exactly ``skew`` seconds.
    now = int(time.time())
    monkeypatch.setattr(request_auth, "time", SimpleNamespace(time=lambda: float(now)))
    raw = orjson.dumps(job())
    response = await post(ingest, raw, ingest.signed(raw, timestamp=now + skew))
    assert response.status_code == status


@pytest.mark.parametrize(
    "change",
    [
        {"X-Signature": "v2=" + "0" * 64},
        {"X-Signature": "garbage"},
        {"X-Key-Id": "unknown-key"},
        {"X-Client-Id": "ünïcode".encode()},
        {"X-Content-SHA256": "0" * 64},
        {"X-Timestamp": "not-a-number"},
        {"X-Nonce": ""},
    ],
)
async def test_bad_auth_headers_are_401(ingest: Ingest, change: dict[str, Any]) -> None:
    raw = orjson.dumps(job())
    response = await post(ingest, raw, ingest.signed(raw) | change)
    assert response.status_code == 401
    assert response.json() == {"error": "unauthorized"}


async def test_no_auth_headers_is_401(ingest: Ingest) -> None:
    assert (await post(ingest, orjson.dumps(job()), {})).status_code == 401


async def test_duplicated_auth_header_is_401(ingest: Ingest) -> None:
    raw = orjson.dumps(job())
    headers = [*list(ingest.signed(raw).items()), ("X-Nonce", "another-nonce-1234567")]
    response = await ingest.client.post(
        "/api/v2/jobs", content=raw, headers=[("Content-Type", "application/json"), *headers]
    )
    assert response.status_code == 401


async def test_the_query_string_is_signed(ingest: Ingest) -> None:
    raw = orjson.dumps(job())
    response = await ingest.client.post(
        "/api/v2/jobs?debug=1",
        content=raw,
        headers={"Content-Type": "application/json"} | ingest.signed(raw),
    )
    assert response.status_code == 401


async def test_a_retiring_key_still_works_a_revoked_one_does_not(
    ingest: Ingest, pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as conn:
        await request_auth.set_key_status(conn, ingest.client_id, ingest.key_id, "retiring")
    assert (await ingest.v2(job())).status_code == 201
    async with pool.acquire() as conn:
        await request_auth.set_key_status(conn, ingest.client_id, ingest.key_id, "revoked")
    assert (await ingest.v2(job())).status_code == 401


async def test_wrong_content_type_is_415(ingest: Ingest) -> None:
    raw = orjson.dumps(job())
    response = await post(ingest, raw, ingest.signed(raw) | {"Content-Type": "text/plain"})
    assert response.status_code == 415


@pytest.mark.parametrize(
    "body",
    [
        {"lots": [], "languages": ["en"]},
        {"lots": [{"lot_id": "A", "images": []}], "languages": []},
        {"lots": [{"lot_id": "A", "images": [{"url": "x"}]}], "languages": ["en"]},
        {"lots": [{"lot_id": True, "images": []}], "languages": ["en"]},
        {"lots": [{"lot_id": "A", "images": [], "extra": 1}], "languages": ["en"]},
        {"lots": [{"lot_id": "A", "images": ["u"] * 101}], "languages": ["en"]},
    ],
)
async def test_invalid_fields_are_422(ingest: Ingest, body: dict[str, Any]) -> None:
    response = await ingest.v2(body)
    assert response.status_code == 422
    assert response.json()["error"].startswith("Invalid field ")


async def test_idempotency_key_on_v2(ingest: Ingest, pool: asyncpg.Pool, unique: str) -> None:
    body = job()
    first = await ingest.v2(body, headers={"Idempotency-Key": unique})
    again = await ingest.v2(body, headers={"Idempotency-Key": unique})
    assert first.status_code == again.status_code == 201
    assert first.content == again.content
    count = await pool.fetchval("SELECT count(*) FROM jobs WHERE client_id = $1", ingest.client_id)
    assert count == 1
    other = await ingest.v2(job(), headers={"Idempotency-Key": unique})
    assert other.status_code == 422


async def test_per_client_rate_limit(ingest: Ingest, pool: asyncpg.Pool) -> None:
    await pool.execute(
        "UPDATE api_clients SET rate_per_s = 0.2, rate_burst = 3 WHERE client_id = $1",
        ingest.client_id,
    )
    statuses = [(await ingest.v2(job(1))).status_code for _ in range(4)]
    limited = await ingest.v2(job(1))
    assert statuses[:3] == [201, 201, 201]
    assert statuses[3] == 429
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["retry-after"]) <= 6
