"""The X-Signature header matrix (contract Decision 2, §2.2, vectors §2.4) on every signed route."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
import pytest
from gen_common.signing import hmac_hex

from tests.status.conftest import KEY, InsertJob, InsertLot

pytestmark = pytest.mark.pg

JOB = uuid.UUID("11111111-2222-3333-4444-555555555555")
H0 = "2711cc23e9ab1b8a9bc0fe991238da92671624a9ebdaf1c1abec06e7e9a14f9b"
H1 = "cebaba593292593b9c411e62ce0d4992e1622a16828737d2af1077fca5333735"
H2 = "d96c5e8f89eb28849798cb6b8488c4af258b6895c273afb298bb7907dafe1ad3"
D1 = "4598c08301b75371649fd7efd30609287b4e4ef1fc6cf00644e02df59e497af1"
H2_BODY = b'{"job_id":"11111111-2222-3333-4444-555555555555"}'


def test_contract_vectors_for_test_key() -> None:
    key = KEY.encode()
    assert hmac_hex(key, b"") == H0
    assert hmac_hex(key, b"{}") == H1
    assert hmac_hex(key, H2_BODY) == H2
    assert hmac_hex(key, str(JOB).encode()) == D1


@pytest.fixture
async def vector_job(pool: asyncpg.Pool, insert_job: InsertJob, insert_lot: InsertLot) -> None:
    """The contract's job id, completed with one lot (re-created for every test)."""
    await pool.execute("DELETE FROM jobs WHERE job_id = $1", JOB)
    await insert_job(JOB, status="completed", total_lots=1, completed_lots=1)
    await insert_lot(JOB, 0, status="completed")


# (header, body, accepted with legacy forms on, accepted with legacy forms off)
MATRIX = [
    pytest.param(None, b"", False, False, id="no-header"),
    pytest.param("", b"", False, False, id="empty-header"),
    pytest.param(H0, b"", True, False, id="H0-empty-string"),
    pytest.param("sha256=" + H0, b"", True, False, id="H0-prefixed"),
    pytest.param(H0.upper(), b"", True, False, id="H0-upper"),
    pytest.param(H1, b"{}", True, True, id="H1-body"),
    pytest.param("sha256=" + H1, b"{}", True, True, id="H1-prefixed"),
    pytest.param(H1, b"", False, False, id="H1-without-its-body"),
    pytest.param(H1, b"{ }", False, False, id="H1-other-body"),
    pytest.param(H2, H2_BODY, True, True, id="H2-body"),
    pytest.param(D1, b"", True, False, id="D1-job-id"),
    pytest.param("sha256=" + D1, b"", True, False, id="D1-prefixed"),
    pytest.param(D1, b"{}", True, False, id="D1-with-a-body"),
    pytest.param(H0[:-1], b"", False, False, id="truncated"),
    pytest.param(hmac_hex(b"other-key", b""), b"", False, False, id="wrong-key"),
    pytest.param("sha1=" + H0, b"", False, False, id="wrong-prefix"),
    pytest.param("é".encode("latin-1") * 64, b"", False, False, id="non-ascii"),
]
ROUTES = [
    ("GET", f"/api/v1/batch-results/{JOB}", 200),
    ("GET", f"/api/v1/batch-results/{JOB}/download", 200),
    ("GET", f"/api/v1/batch-results/{JOB}/download.jsonl", 200),
    ("GET", "/api/v1/batch-jobs", 200),
]


@pytest.mark.parametrize(("header", "body", "legacy_ok", "strict_ok"), MATRIX)
@pytest.mark.parametrize("legacy", [True, False], ids=["legacy-on", "legacy-off"])
@pytest.mark.usefixtures("vector_job")
async def test_header_signature_matrix(
    open_client: Any,
    header: str | bytes | None,
    body: bytes,
    legacy_ok: bool,
    strict_ok: bool,
    legacy: bool,
) -> None:
    client: httpx.AsyncClient = await open_client(legacy_header_signatures=legacy)
    raw = header.encode() if isinstance(header, str) else header
    headers = {} if raw is None else {b"X-Signature": raw}
    accepted = legacy_ok if legacy else strict_ok
    for method, path, ok_status in ROUTES:
        if path == "/api/v1/batch-jobs" and header in (D1, "sha256=" + D1):
            expected = 401  # the job-id form needs a job id in the path; the list has none
        else:
            expected = ok_status if accepted else 401
        r = await client.request(method, path, content=body, headers=headers)
        assert r.status_code == expected, (path, r.text)
        if expected == 401:
            assert r.content == b'{"error":"Invalid signature"}\n'


async def test_job_id_form_is_bound_to_the_path(
    client: httpx.AsyncClient, insert_job: InsertJob
) -> None:
    other = await insert_job(status="completed")
    r = await client.get(f"/api/v1/batch-results/{other}", headers={"X-Signature": D1})
    assert r.status_code == 401


async def test_cancel_signature_is_checked_before_the_job_lookup(
    client: httpx.AsyncClient,
) -> None:
    r = await client.post(f"/api/v1/batch-jobs/{uuid.uuid4()}/cancel", content=b"{}")
    assert r.status_code == 401
    signed = {"X-Signature": H1}
    r = await client.post(
        f"/api/v1/batch-jobs/{uuid.uuid4()}/cancel", content=b"{}", headers=signed
    )
    assert r.status_code == 404
    assert r.json() == {"error": "Job not found"}


async def test_a_body_over_one_megabyte_is_413(client: httpx.AsyncClient) -> None:
    r = await client.post(
        f"/api/v1/batch-jobs/{JOB}/cancel", content=b"x" * 1_048_577, headers={"X-Signature": H0}
    )
    assert r.status_code == 413
    assert r.json() == {"error": "Request body too large"}
