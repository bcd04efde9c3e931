"""batch-results and its downloads (contract §1.3, §1.5; JSON Lines per issue 4)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from gen_common.signing import hmac_hex

from tests.status.conftest import KEY, InsertJob, InsertLot

pytestmark = pytest.mark.pg
SIGNED = {"X-Signature": hmac_hex(KEY.encode(), b"")}
EN_RU = [
    {"language": "en", "damages": "<p>Dent.</p>"},
    {"language": "ru", "damages": "<p>Вмятина.</p>"},
]


def expected_lot(seq: int, **over: Any) -> dict[str, Any]:
    return {
        "lot_id": f"L{seq}",
        "status": "completed",
        "vision_result": "<p>Dent.</p>",
        "translations": {"ru": "<p>Вмятина.</p>"},
        "error_message": None,
        "missing_images": [],
        "descriptions": EN_RU,
        **over,
    }


async def completed_job(insert_job: InsertJob, insert_lot: InsertLot, lots: int) -> uuid.UUID:
    job = await insert_job(
        status="completed",
        total_lots=lots,
        completed_lots=lots - 1,
        failed_lots=1,
        completed_at=None,
    )
    for seq in range(lots - 1):
        await insert_lot(job, seq, status="completed", descriptions=EN_RU)
    await insert_lot(
        job,
        lots - 1,
        status="failed",
        error_message="image_unreachable",
        missing_images=["https://h/x.jpg"],
    )
    return job


def expected_lots(lots: int) -> list[dict[str, Any]]:
    body = [expected_lot(seq) for seq in range(lots - 1)]
    body.append(
        expected_lot(
            lots - 1,
            status="failed",
            vision_result=None,
            translations={},
            error_message="image_unreachable",
            missing_images=["https://h/x.jpg"],
            descriptions=[],
        )
    )
    return body


async def test_results_of_a_completed_job(
    client: httpx.AsyncClient, insert_job: InsertJob, insert_lot: InsertLot
) -> None:
    job = await completed_job(insert_job, insert_lot, 3)
    r = await client.get(f"/api/v1/batch-results/{job}", headers=SIGNED)
    assert r.status_code == 200
    expected = {
        "completed_at": "2025-08-05T20:29:00",
        "job_id": str(job),
        "status": "completed",
        "results": {"job_id": str(job), "status": "completed", "lots": expected_lots(3)},
    }
    assert r.json() == expected
    assert (
        r.content == (json.dumps(expected, separators=(",", ":"), sort_keys=True) + "\n").encode()
    )


@pytest.mark.parametrize("chunk", [1, 2, 1000], ids=["chunk-1", "chunk-2", "one-piece"])
async def test_streamed_results_equal_the_one_piece_answer(
    open_client: Any, insert_job: InsertJob, insert_lot: InsertLot, chunk: int
) -> None:
    client: httpx.AsyncClient = await open_client(download_chunk=chunk)
    job = await completed_job(insert_job, insert_lot, 5)
    r = await client.get(f"/api/v1/batch-results/{job}", headers=SIGNED)
    assert r.json()["results"]["lots"] == expected_lots(5)
    d = await client.get(f"/api/v1/batch-results/{job}/download", headers=SIGNED)
    expected = {
        "job_id": str(job),
        "status": "completed",
        "completed_at": "2025-08-05T20:29:00",
        "generated_at": "2025-08-05T20:28:57.827452",
        "total_lots": 5,
        "processed_lots": 4,
        "failed_lots": 1,
        "languages": ["en", "ru"],
        "results": {"job_id": str(job), "status": "completed", "lots": expected_lots(5)},
    }
    assert d.content == json.dumps(expected, indent=2, ensure_ascii=False).encode()
    assert d.headers["content-disposition"] == f"attachment; filename=batch_results_{job}.json"
    if chunk == 1000:
        assert d.headers["content-length"] == str(len(d.content))
    lines = await client.get(f"/api/v1/batch-results/{job}/download.jsonl", headers=SIGNED)
    assert lines.headers["content-type"] == "application/x-ndjson"
    assert [json.loads(x) for x in lines.content.splitlines()] == expected_lots(5)
    assert lines.content.endswith(b"\n")
    query = await client.get(f"/api/v1/batch-results/{job}/download?format=jsonl", headers=SIGNED)
    assert query.content == lines.content


@pytest.mark.parametrize("status", ["pending", "processing", "failed", "cancelled"])
async def test_not_completed_is_202(
    client: httpx.AsyncClient, insert_job: InsertJob, status: str
) -> None:
    job = await insert_job(status=status)
    r = await client.get(f"/api/v1/batch-results/{job}", headers=SIGNED)
    assert r.status_code == 202
    assert r.json() == {
        "error": "Job not completed",
        "message": f"Job is currently {status}. Results will be available when status is "
        "'completed'.",
        "status": status,
    }
    for path in ("download", "download.jsonl"):
        d = await client.get(f"/api/v1/batch-results/{job}/{path}", headers=SIGNED)
        assert d.status_code == 202
        assert d.json() == {"error": "Job not completed", "status": status}


async def test_unknown_job_and_missing_results_are_404(
    client: httpx.AsyncClient, insert_job: InsertJob
) -> None:
    for path in ("", "/download", "/download.jsonl"):
        r = await client.get(f"/api/v1/batch-results/{uuid.uuid4()}{path}", headers=SIGNED)
        assert (r.status_code, r.json()) == (404, {"error": "Job not found"})
    empty = await insert_job(status="completed")
    for path in ("", "/download", "/download.jsonl"):
        r = await client.get(f"/api/v1/batch-results/{empty}{path}", headers=SIGNED)
        assert (r.status_code, r.json()) == (404, {"error": "Results not found"})
