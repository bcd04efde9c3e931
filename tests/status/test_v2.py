"""v2 reads: signed requests (gen_common.request_auth), ownership, RFC 3339, cursor pagination."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
import httpx
import pytest
from gen_common import request_auth

from tests.status.conftest import InsertJob, InsertLot

pytestmark = pytest.mark.pg
Signer = Callable[..., dict[str, str]]


@pytest.fixture
async def signer(pool: asyncpg.Pool, unique: str) -> tuple[str, Signer]:
    client_id = f"status-{unique}"
    async with pool.acquire() as conn:
        await request_auth.create_client(conn, client_id)
        key_id, secret = await request_auth.create_key(conn, client_id)

    def sign(path: str, query: str = "", **kw: object) -> dict[str, str]:
        return request_auth.sign(
            secret,
            client_id=client_id,
            key_id=key_id,
            method="GET",
            path=path,
            query=query,
            **kw,  # type: ignore[arg-type]
        )

    return client_id, sign


async def get(
    client: httpx.AsyncClient, sign: Signer, path: str, query: str = ""
) -> httpx.Response:
    url = path + (f"?{query}" if query else "")
    return await client.get(url, headers=sign(path, query))


async def test_job_with_usage_and_rfc3339_times(
    client: httpx.AsyncClient, insert_job: InsertJob, signer: tuple[str, Signer]
) -> None:
    client_id, sign = signer
    job = await insert_job(
        client_id=client_id,
        api_version=2,
        mode="realtime",
        total_lots=3,
        completed_lots=2,
        input_tokens=1200,
        cached_tokens=100,
        output_tokens=300,
        reasoning_tokens=50,
        cost_usd=Decimal("0.012345"),
        webhook_url="https://client.example/hook",
    )
    r = await get(client, sign, f"/api/v2/jobs/{job}")
    assert r.status_code == 200, r.text
    assert r.json() == {
        "job_id": str(job),
        "status": "processing",
        "mode": "realtime",
        "languages": ["en", "ru"],
        "total_lots": 3,
        "completed_lots": 2,
        "failed_lots": 0,
        "pending_lots": 1,
        "usage": {
            "input_tokens": 1200,
            "cached_tokens": 100,
            "output_tokens": 300,
            "reasoning_tokens": 50,
            "cost_usd": 0.012345,
        },
        "error_message": None,
        "webhook_url": "https://client.example/hook",
        "created_at": "2025-08-05T20:28:57.827452Z",
        "updated_at": "2025-08-05T20:29:00Z",
        "completed_at": None,
        "cancelled_at": None,
        "links": {"self": f"/api/v2/jobs/{job}", "lots": f"/api/v2/jobs/{job}/lots"},
    }


async def test_lots_by_cursor(
    client: httpx.AsyncClient,
    insert_job: InsertJob,
    insert_lot: InsertLot,
    signer: tuple[str, Signer],
) -> None:
    client_id, sign = signer
    job = await insert_job(client_id=client_id, total_lots=5)
    done = datetime(2025, 8, 6, 11, 30, tzinfo=UTC)
    for seq in range(5):
        await insert_lot(
            job,
            seq,
            status="completed" if seq < 3 else "assessing",
            descriptions=[{"language": "en", "damages": "<p>x</p>"}] if seq < 3 else None,
            input_tokens=seq * 10,
            cost_usd=Decimal("0.5"),
            completed_at=done if seq < 3 else None,
        )
    seen, cursor, pages = [], None, 0
    while True:
        query = "limit=2" + (f"&cursor={cursor}" if cursor else "")
        body = (await get(client, sign, f"/api/v2/jobs/{job}/lots", query)).json()
        pages += 1
        seen += body["lots"]
        cursor = body["next_cursor"]
        if cursor is None:
            assert body["links"]["next"] is None
            break
        assert body["links"]["next"] == f"/api/v2/jobs/{job}/lots?cursor={cursor}&limit=2"
    assert pages == 3
    assert [lot["lot_seq"] for lot in seen] == [0, 1, 2, 3, 4]
    assert seen[1]["usage"] == {
        "input_tokens": 10,
        "cached_tokens": 0,
        "output_tokens": 0,
        "reasoning_tokens": 0,
        "cost_usd": 0.5,
    }
    assert seen[0]["completed_at"] == "2025-08-06T11:30:00Z"
    assert seen[0]["descriptions"] == [{"language": "en", "damages": "<p>x</p>"}]
    assert seen[4]["status"] == "assessing"
    assert seen[4]["descriptions"] == []
    everything = (await get(client, sign, f"/api/v2/jobs/{job}/lots")).json()
    assert len(everything["lots"]) == 5
    assert everything["next_cursor"] is None


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("cursor=!!", "Invalid cursor"),
        ("cursor=czE", "Invalid cursor"),
        ("cursor=eHl6", "Invalid cursor"),
        ("limit=0", "limit must be an integer from 1 to 1000"),
        ("limit=1001", "limit must be an integer from 1 to 1000"),
        ("limit=-1", "limit must be an integer from 1 to 1000"),
        ("limit=x", "limit must be an integer from 1 to 1000"),
    ],
)
async def test_bad_cursor_or_limit_is_400(
    client: httpx.AsyncClient,
    insert_job: InsertJob,
    signer: tuple[str, Signer],
    query: str,
    message: str,
) -> None:
    client_id, sign = signer
    job = await insert_job(client_id=client_id)
    r = await get(client, sign, f"/api/v2/jobs/{job}/lots", query)
    if query == "cursor=czE":  # "s1" is a valid cursor
        assert r.status_code == 200
        return
    assert (r.status_code, r.json()) == (400, {"error": message})


async def test_other_clients_and_unknown_jobs_are_404(
    client: httpx.AsyncClient, insert_job: InsertJob, signer: tuple[str, Signer]
) -> None:
    _, sign = signer
    foreign = await insert_job(client_id="someone-else")
    for path in (
        f"/api/v2/jobs/{foreign}",
        f"/api/v2/jobs/{uuid.uuid4()}/lots",
        "/api/v2/jobs/not-a-uuid",
    ):
        r = await get(client, sign, path)
        assert (r.status_code, r.json()) == (404, {"error": "Job not found"})


async def test_unsigned_replayed_and_skewed_requests_are_401(
    client: httpx.AsyncClient, insert_job: InsertJob, signer: tuple[str, Signer]
) -> None:
    client_id, sign = signer
    job = await insert_job(client_id=client_id)
    path = f"/api/v2/jobs/{job}"
    unsigned = await client.get(path)
    assert (unsigned.status_code, unsigned.json()) == (401, {"error": "unauthorized"})
    headers = sign(path)
    assert (await client.get(path, headers=headers)).status_code == 200
    assert (await client.get(path, headers=headers)).status_code == 401  # replay
    now = int(time.time())
    assert (await client.get(path, headers=sign(path, timestamp=now - 299))).status_code == 200
    assert (await client.get(path, headers=sign(path, timestamp=now + 299))).status_code == 200
    assert (await client.get(path, headers=sign(path, timestamp=now - 301))).status_code == 401
    assert (await client.get(path, headers=sign(path, timestamp=now + 301))).status_code == 401
    other_path = await client.get(f"{path}/lots", headers=sign(path))
    assert other_path.status_code == 401
    v1_style = await client.get(path, headers={"X-Signature": "0" * 64})
    assert v1_style.status_code == 401


def test_cursor_round_trip() -> None:
    from gen_status.routes_v2 import decode_cursor, encode_cursor

    for seq in (0, 1, 99, 2**31 - 1):
        assert decode_cursor(encode_cursor(seq)) == seq
    assert decode_cursor(encode_cursor(2**31)) is None
