"""Schemathesis against the checked-in OpenAPI document and a real uvicorn process.

Every case is sent signed: v1 header routes get an X-Signature of one of the accepted forms (or
keep the generated junk for a third of the cases, which must then be a documented 401), v2 routes
are signed with gen_common.request_auth over the exact path and query sent. Half of the job ids are
swapped for seeded jobs so the 200 bodies are exercised, not only the 404s.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
import requests
import schemathesis
from gen_common import request_auth
from gen_common.signing import hmac_hex
from gen_devstack.ports import free_port
from gen_status import openapi
from hypothesis import HealthCheck, Phase, settings

from tests.status.conftest import KEY

pytestmark = [pytest.mark.pg, pytest.mark.kafka, pytest.mark.e2e]
schema = schemathesis.openapi.from_path(openapi.PATH)
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.response_headers_conformance,
]
SIGNED_V1 = ("/batch-results", "/batch-jobs")
Seeded = dict[str, Any]
SEEN: dict[str, set[int]] = {}
COUNTS: Counter[str] = Counter()


@pytest.fixture(scope="module")
async def seeded(pool: asyncpg.Pool) -> Seeded:
    client_id = f"fuzz-{uuid.uuid4().hex[:8]}"
    async with pool.acquire() as conn:
        await request_auth.create_client(conn, client_id)
        key_id, secret = await request_auth.create_key(conn, client_id)
    jobs = []
    for status in ("completed", "processing", "cancelled"):
        job = uuid.uuid4()
        await pool.execute(
            """INSERT INTO jobs (job_id, client_id, api_version, mode, status, languages,
                                 total_lots, completed_lots, failed_lots, cost_usd, error_message)
               VALUES ($1, $2, 2, 'batch', $3, '{en,ru}', 3, 2, 1, 0.25,
                       CASE WHEN $3 = 'cancelled' THEN 'Job cancelled by user request' END)""",
            job,
            client_id,
            status,
        )
        for seq in range(3):
            await pool.execute(
                """INSERT INTO lots (job_id, lot_seq, lot_id, status, descriptions,
                                     missing_images, cost_usd, error_message)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
                job,
                seq,
                f"F{seq}" if seq else seq,
                "failed" if seq == 2 else "completed",
                None
                if seq == 2
                else [
                    {"language": "en", "damages": "<p>Dent ✓</p>"},
                    {"language": "ru", "damages": "<p>Вмятина</p>"},
                ],
                ["https://h/1.jpg"] if seq == 2 else [],
                Decimal("0.1"),
                "image_unreachable" if seq == 2 else None,
            )
        jobs.append(str(job))
    return {"jobs": jobs, "client_id": client_id, "key_id": key_id, "secret": secret}


@pytest.fixture(scope="module")
def base_url(migrated: str, kafka_bootstrap: str) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "DB__URL": migrated,
        "KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
        "KAFKA__TOPIC_PREFIX": f"fuzz{uuid.uuid4().hex[:8]}.",
        "STATUS__PORT": str(port),
        "STATUS__SHARED_KEY": KEY,
        "LOG__LEVEL": "WARNING",
    }
    proc = subprocess.Popen([sys.executable, "-m", "gen_status"], env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert proc.poll() is None, "status service exited"
            assert time.monotonic() < deadline, "status service did not start"
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        code = proc.wait(timeout=30)
    assert code == 0, f"status service exited {code} on SIGTERM (graceful shutdown expected)"


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s
    # The swapped-in seeded ids must have reached the success paths of every operation run.
    for operation, codes in SEEN.items():
        assert 200 in codes, f"{operation} never answered 200: {sorted(codes)}"
    for operation, count in COUNTS.items():
        if operation != "GET /health":  # no inputs: hypothesis exhausts it after a few cases
            assert count >= 200, f"{operation}: only {count} examples"


def _prepare(case: Any, base_url: str, seeded: Seeded) -> requests.PreparedRequest:
    path: str = case.path
    job_id = (case.path_parameters or {}).get("job_id")
    if isinstance(job_id, str) and len(job_id) % 2 == 0:
        case.path_parameters["job_id"] = seeded["jobs"][len(job_id) % 3]
    kwargs = case.as_transport_kwargs(base_url=base_url)
    prepared = requests.Request(
        method=kwargs["method"],
        url=kwargs["url"],
        headers=kwargs["headers"],
        params=kwargs.get("params"),
        cookies=kwargs.get("cookies"),
    ).prepare()
    raw_path, _, query = (prepared.path_url or "/").partition("?")
    if path.startswith("/api/v2/"):
        prepared.headers.update(
            request_auth.sign(
                seeded["secret"],
                client_id=seeded["client_id"],
                key_id=seeded["key_id"],
                method=prepared.method or "GET",
                path=raw_path,
                query=query,
            )
        )
    elif any(part in path for part in SIGNED_V1) and len(str(job_id or "")) % 5 != 1:
        message = str(case.path_parameters.get("job_id", "")) if job_id is not None else ""
        use_job = job_id is not None and len(message) % 2 == 0
        prepared.headers["X-Signature"] = hmac_hex(
            KEY.encode(), message.encode() if use_job else b""
        )
    return prepared


@schema.parametrize()
@settings(
    max_examples=200,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_openapi(
    case: Any, base_url: str, seeded: Seeded, session: requests.Session
) -> None:
    prepared = _prepare(case, base_url, seeded)
    response = session.send(prepared, timeout=30, allow_redirects=False)
    if case.method.upper() == case.operation.method.upper():  # (it also probes other methods)
        SEEN.setdefault(f"{case.method} {case.path}", set()).add(response.status_code)
    COUNTS[f"{case.operation.method.upper()} {case.path}"] += 1
    case.validate_response(response, checks=CHECKS)
