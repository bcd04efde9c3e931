"""The unsigned v1 reads (contract §1.2, §1.4, §1.8), /health, /metrics and JSON 404/405."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest

from tests.status.conftest import KEY, InsertJob, InsertLot

pytestmark = pytest.mark.pg


async def test_batch_status_is_the_union_of_both_original_handlers(
    client: httpx.AsyncClient, insert_job: InsertJob
) -> None:
    job = await insert_job(total_lots=3, completed_lots=1, failed_lots=1)
    r = await client.get(f"/api/v1/batch-status/{job}")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {
        "job_id": str(job),
        "status": "processing",
        "created_at": "2025-08-05T20:28:57.827452",
        "updated_at": "2025-08-05T20:29:00",
        "error": None,
        "error_message": None,
        "progress": {
            "total_lots": 3,
            "processed_lots": 1,
            "failed_lots": 1,
            "completion_percentage": 66.67,
        },
        "languages": ["en", "ru"],
    }


async def test_v1_json_is_jsonify_style(client: httpx.AsyncClient, insert_job: InsertJob) -> None:
    job = await insert_job(status="failed", error_message="Ошибка \u00d8 / done")
    r = await client.get(f"/api/v1/batch-status/{job}")
    expected = json.dumps(r.json(), separators=(",", ":"), sort_keys=True) + "\n"
    assert r.content == expected.encode()
    assert r.content.isascii()
    assert b"\\u041e" in r.content


@pytest.mark.parametrize(
    "spelling",
    [str.upper, lambda s: "{" + s + "}", lambda s: s.replace("-", "")],
    ids=["upper", "braces", "no-hyphens"],
)
async def test_job_id_is_echoed_as_given(
    client: httpx.AsyncClient, insert_job: InsertJob, spelling: Any
) -> None:
    job = await insert_job()
    given = spelling(str(job))
    r = await client.get(f"/api/v1/batch-status/{given}")
    assert r.status_code == 200
    assert r.json()["job_id"] == given


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/batch-status/{unknown}",
        "/api/v1/batch-status/not-a-uuid",
        "/api/v1/batch-status/" + "1" * 200,
        "/api/v1/batch-status/%00",
        "/api/v1/jobs/{unknown}",
        "/api/v1/jobs/zzz",
        "/api/v1/jobs/{unknown}/status",
        "/api/v1/jobs/zzz/status",
    ],
)
async def test_unknown_or_malformed_ids_are_404(client: httpx.AsyncClient, path: str) -> None:
    r = await client.get(path.format(unknown=uuid.uuid4()))
    assert r.status_code == 404
    assert r.content == b'{"error":"Job not found"}\n'


async def test_batch_status_has_no_side_effects(
    client: httpx.AsyncClient, insert_job: InsertJob, pool: asyncpg.Pool
) -> None:
    job = await insert_job()
    before = await pool.fetchrow("SELECT * FROM jobs WHERE job_id = $1", job)
    for _ in range(3):
        assert (await client.get(f"/api/v1/batch-status/{job}")).status_code == 200
    assert await pool.fetchrow("SELECT * FROM jobs WHERE job_id = $1", job) == before


async def test_progress_appears_as_the_pipeline_writes_it(
    client: httpx.AsyncClient, insert_job: InsertJob, pool: asyncpg.Pool
) -> None:
    job = await insert_job(total_lots=4)
    first = (await client.get(f"/api/v1/batch-status/{job}")).json()
    assert first["progress"]["completion_percentage"] == 0.0
    await pool.execute(
        "UPDATE jobs SET completed_lots = 3, failed_lots = 1, status = 'completed',"
        " updated_at = '2025-08-06 11:30:00+00' WHERE job_id = $1",
        job,
    )
    body = (await client.get(f"/api/v1/batch-status/{job}")).json()
    assert body["status"] == "completed"
    assert body["updated_at"] == "2025-08-06T11:30:00"
    assert body["progress"] == {
        "total_lots": 4,
        "processed_lots": 3,
        "failed_lots": 1,
        "completion_percentage": 100.0,
    }


@pytest.mark.parametrize(
    "path", ["/api/v1/batch-status/{job}", "/api/v1/jobs/{job}", "/api/v1/jobs/{job}/status"]
)
async def test_open_routes_can_require_a_signature(
    open_client: Any, insert_job: InsertJob, path: str
) -> None:
    from gen_common.signing import hmac_hex

    client = await open_client(sign_open_routes=True)
    job = await insert_job()
    url = path.format(job=job)
    assert (await client.get(url)).json() == {"error": "Invalid signature"}
    assert (await client.get(url)).status_code == 401
    good = hmac_hex(KEY.encode(), b"")
    assert (await client.get(url, headers={"X-Signature": good})).status_code == 200


async def test_job_status_adds_error_only_when_non_empty(
    client: httpx.AsyncClient, insert_job: InsertJob
) -> None:
    plain = await insert_job()
    r = await client.get(f"/api/v1/jobs/{plain}/status")
    assert r.json() == {
        "created_at": "2025-08-05T20:28:57.827452",
        "job_id": str(plain),
        "status": "processing",
        "updated_at": "2025-08-05T20:29:00",
    }
    failed = await insert_job(status="failed", error_message="Vision failed")
    assert (await client.get(f"/api/v1/jobs/{failed}/status")).json()["error"] == "Vision failed"
    blank = await insert_job(status="failed", error_message="")
    assert "error" not in (await client.get(f"/api/v1/jobs/{blank}/status")).json()


DESCRIPTIONS = [
    {"language": "en", "damages": "<p>Dent on door.</p>"},
    {"language": "ru", "damages": "<p>Вмятина.</p>"},
]


async def test_job_detail_before_completion_has_counters_and_finished_lots(
    client: httpx.AsyncClient, insert_job: InsertJob, insert_lot: InsertLot
) -> None:
    job = await insert_job(total_lots=3, completed_lots=1)
    await insert_lot(job, 0, lot_id="C1", status="completed", descriptions=DESCRIPTIONS)
    await insert_lot(job, 1, lot_id=7, status="translating")
    await insert_lot(job, 2, status="assessing")
    body = (await client.get(f"/api/v1/jobs/{job}")).json()
    assert body == {
        "error": None,
        "failed_lots": 0,
        "job_id": str(job),
        "message": "Job is currently processing",
        "processed_lots": 1,
        "status": "processing",
        "total_lots": 3,
        "results": [
            {
                "descriptions": DESCRIPTIONS,
                "error_message": None,
                "lot_id": "C1",
                "missing_images": [],
                "status": "completed",
                "translations": {"ru": "<p>Вмятина.</p>"},
                "vision_result": "<p>Dent on door.</p>",
            }
        ],
    }


async def test_job_detail_when_completed(
    client: httpx.AsyncClient, insert_job: InsertJob, insert_lot: InsertLot
) -> None:
    job = await insert_job(status="completed", completed_lots=1, failed_lots=1)
    await insert_lot(
        job,
        1,
        lot_id=42,
        status="failed",
        error_message="image_unreachable",
        missing_images=["https://h/1.jpg"],
    )
    await insert_lot(job, 0, lot_id="C1", status="completed", descriptions=DESCRIPTIONS)
    body = (await client.get(f"/api/v1/jobs/{job}")).json()
    assert set(body) == {
        "failed_lots",
        "job_id",
        "processed_lots",
        "status",
        "total_lots",
        "results",
    }
    assert [lot["lot_id"] for lot in body["results"]] == ["C1", 42]
    assert body["results"][1] == {
        "descriptions": [],
        "error_message": "image_unreachable",
        "lot_id": 42,
        "missing_images": ["https://h/1.jpg"],
        "status": "failed",
        "translations": {},
        "vision_result": "No vision result",
    }


async def test_health_checks_the_database(client: httpx.AsyncClient) -> None:
    r = await client.get("/health")
    assert r.status_code == 200
    assert r.json() == {"database": "ok", "service": "generation-service", "status": "healthy"}


async def test_metrics_count_requests_by_route(
    client: httpx.AsyncClient, insert_job: InsertJob
) -> None:
    job = await insert_job()
    await client.get(f"/api/v1/batch-status/{job}")
    text = (await client.get("/metrics")).text
    assert (
        'status_http_requests_total{code="200",method="GET",route="/api/v1/batch-status/{job_id}"}'
        in text
    )


@pytest.mark.parametrize(
    ("method", "path", "status", "message"),
    [
        ("GET", "/nope", 404, "Not Found"),
        ("GET", "/api/v1/batch-status", 404, "Not Found"),
        ("POST", "/api/v1/batch-status/x", 405, "Method Not Allowed"),
        ("DELETE", "/health", 405, "Method Not Allowed"),
        ("GET", "/api/v1/batch-jobs/x/cancel", 405, "Method Not Allowed"),
    ],
)
async def test_unknown_routes_and_methods_answer_json(
    client: httpx.AsyncClient, method: str, path: str, status: int, message: str
) -> None:
    r = await client.request(method, path)
    assert r.status_code == status
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"error": message}


async def test_database_outage_is_a_json_503(status_settings: Any, insert_job: InsertJob) -> None:
    from gen_status.app import create_app

    app = create_app(status_settings())
    async with app.router.lifespan_context(app):
        await app.state.deps.pool.close()
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://s") as c:
            r = await c.get(f"/api/v1/batch-status/{uuid.uuid4()}")
            assert r.status_code == 503
            assert r.json() == {"error": "Service unavailable"}
            health = await c.get("/health")
            assert health.status_code == 503
            assert health.json()["status"] == "unhealthy"


def test_timestamps_drop_zero_microseconds() -> None:
    from gen_status.wire import v1_time, v2_time

    assert v1_time(datetime(2025, 8, 5, 20, 28, 57, tzinfo=UTC)) == "2025-08-05T20:28:57"
    assert v1_time(datetime(2025, 8, 5, 20, 28, 57, 5, tzinfo=UTC)) == "2025-08-05T20:28:57.000005"
    assert v2_time(datetime(2025, 8, 5, 20, 28, 57, tzinfo=UTC)) == "2025-08-05T20:28:57Z"


async def test_fast_path_answers_like_the_routed_handler(
    open_client: Any, insert_job: InsertJob
) -> None:
    """batch-status is served by fastpath.py; with signatures required the routed handler runs."""
    from gen_common.signing import hmac_hex

    fast: httpx.AsyncClient = await open_client()
    routed: httpx.AsyncClient = await open_client(sign_open_routes=True)
    signed = {"X-Signature": hmac_hex(KEY.encode(), b"")}
    job = await insert_job(status="failed", error_message="Ø", total_lots=7, completed_lots=3)
    for path in (
        f"/api/v1/batch-status/{job}",
        f"/api/v1/batch-status/{uuid.uuid4()}",
        "/api/v1/batch-status/x%2Fy",
        "/api/v1/batch-status/%20",
    ):
        a = await fast.get(path)
        b = await routed.get(path, headers=signed)
        assert (a.status_code, a.content, a.headers["content-type"]) == (
            b.status_code,
            b.content,
            b.headers["content-type"],
        ), path


@pytest.mark.parametrize("status", ["processing", "completed"])
async def test_job_detail_streams_large_jobs_identically(
    open_client: Any, insert_job: InsertJob, insert_lot: InsertLot, status: str
) -> None:
    small: httpx.AsyncClient = await open_client(download_chunk=2)
    whole: httpx.AsyncClient = await open_client()
    job = await insert_job(status=status, total_lots=7, completed_lots=4)
    for seq in range(7):
        done = seq % 3 != 1
        await insert_lot(
            job,
            seq,
            lot_id=seq,
            status="completed" if done else "assessing",
            descriptions=DESCRIPTIONS if done else None,
        )
    a = await small.get(f"/api/v1/jobs/{job}")
    b = await whole.get(f"/api/v1/jobs/{job}")
    assert a.content == b.content
    ids = [lot["lot_id"] for lot in a.json()["results"]]
    assert ids == ([0, 2, 3, 5, 6] if status == "processing" else list(range(7)))
    assert "content-length" not in a.headers
    assert b.headers["content-length"] == str(len(b.content))
    assert (
        a.content == (json.dumps(b.json(), separators=(",", ":"), sort_keys=True) + "\n").encode()
    )
