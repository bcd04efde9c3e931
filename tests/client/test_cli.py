"""The ``gen`` CLI (typer's CliRunner) against real ingest, status and notifier processes on the
session's PostgreSQL and Kafka. No vision or translate runs: jobs stay pending unless a test
finishes their lots in PostgreSQL the way the pipeline would."""

from __future__ import annotations

import csv
import io
import json
import shlex
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from gen_common import request_auth
from gen_notifier import payloads
from gen_notifier import signing as notifier_signing

from .conftest import Services, run_gen

pytestmark = [pytest.mark.pg, pytest.mark.kafka, pytest.mark.e2e]


def job_id_of(stdout: str) -> str:
    return str(uuid.UUID(stdout.strip()))


async def test_submit_csv_batch_then_watch_and_results_while_pending(
    services: Services, lots_csv: Path, pool: asyncpg.Pool
) -> None:
    submitted = services.gen("submit", str(lots_csv), "--languages", "en,ru")
    assert submitted.exit_code == 0, submitted.output
    job_id = job_id_of(submitted.stdout)
    job = await pool.fetchrow("SELECT * FROM jobs WHERE job_id = $1", uuid.UUID(job_id))
    assert job is not None
    assert (job["total_lots"], list(job["languages"]), job["status"]) == (
        2,
        ["en", "ru"],
        "pending",
    )

    watched = services.gen("watch", job_id, "--interval", "0.1", "--timeout", "0.5")
    assert watched.exit_code == 2, watched.output
    assert watched.stdout.strip() == (
        f"{job_id} pending: 0/2 done (0 completed, 0 failed), cost n/a (v1 job)"
    )

    results = services.gen("results", job_id)
    assert results.exit_code == 2
    assert results.stdout == ""
    assert "job not completed (status: pending)" in results.output


async def finish(pool: asyncpg.Pool, job_id: str, *, cost: str = "0.004200") -> None:
    """What vision, translate and the notifier leave behind: two finished lots, a completed job."""
    jid = uuid.UUID(job_id)
    descriptions = [
        {"language": "en", "damages": "<p>Scratch.</p>"},
        {"language": "ru", "damages": "<p>Царапина.</p>"},
    ]
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            """INSERT INTO lots (job_id, lot_seq, lot_id, status, descriptions, missing_images,
                                 cost_usd, completed_at)
               VALUES ($1, 0, '"C1"', 'completed', $2::jsonb, '{https://img.example/2.jpg}',
                       0.0021, now()),
                      ($1, 1, '"C2"', 'failed', NULL, '{}', 0.0021, now())""",
            jid,
            descriptions,
        )
        await conn.execute(
            """UPDATE lots SET error_code = 'vision', error_message = 'no usable image'
               WHERE job_id = $1 AND lot_seq = 1""",
            jid,
        )
        await conn.execute(
            """UPDATE jobs SET status = 'completed', completed_lots = 1, failed_lots = 1,
                   cost_usd = $2::numeric, completed_at = now(), updated_at = now()
               WHERE job_id = $1""",
            jid,
            cost,
        )


async def test_results_of_a_completed_job_as_jsonl_csv_and_json(
    services: Services, tmp_path: Path, pool: asyncpg.Pool
) -> None:
    lots = tmp_path / "lots.jsonl"
    lots.write_text(
        '{"lot_id": "C1", "images": [{"url": "https://img.example/1.jpg"}, {"url": "https://img.example/2.jpg"}]}\n'
        '\n{"lot_id": "C2", "images": [{"url": "https://img.example/3.jpg"}]}\n'
    )
    submitted = services.gen("submit", str(lots), "--languages", "en,ru")
    assert submitted.exit_code == 0, submitted.output
    job_id = job_id_of(submitted.stdout)
    await finish(pool, job_id)

    watched = services.gen("watch", job_id, "--interval", "0.1", "--timeout", "5")
    assert watched.exit_code == 0, watched.output
    assert watched.stdout.strip().endswith(
        "completed: 2/2 done (1 completed, 1 failed), cost n/a (v1 job)"
    )

    jsonl = services.gen("results", job_id)
    assert jsonl.exit_code == 0, jsonl.output
    rows = [json.loads(line) for line in jsonl.stdout.splitlines()]
    assert [(r["lot_id"], r["status"]) for r in rows] == [("C1", "completed"), ("C2", "failed")]
    assert rows[0]["descriptions"][1] == {"language": "ru", "damages": "<p>Царапина.</p>"}

    out = tmp_path / "results.csv"
    as_csv = services.gen("results", job_id, "--format", "csv", "-o", str(out))
    assert as_csv.exit_code == 0, as_csv.output
    table = list(csv.reader(io.StringIO(out.read_text())))
    assert table == [
        ["lot_id", "status", "missing_images", "error_message", "en", "ru"],
        ["C1", "completed", "https://img.example/2.jpg", "", "<p>Scratch.</p>", "<p>Царапина.</p>"],
        ["C2", "failed", "", "no usable image", "", ""],
    ]

    as_json = services.gen("results", job_id, "--format", "json")
    assert as_json.exit_code == 0, as_json.output
    document = json.loads(as_json.stdout)
    assert (document["job_id"], document["total_lots"], document["processed_lots"]) == (
        job_id,
        2,
        1,
    )
    assert [lot["lot_id"] for lot in document["results"]["lots"]] == ["C1", "C2"]


@pytest.fixture
async def v2_key(pool: asyncpg.Pool, unique: str) -> tuple[str, str, str]:
    client_id = f"cli-{unique}"
    async with pool.acquire() as conn:
        await request_auth.create_client(conn, client_id)
        key_id, secret = await request_auth.create_key(conn, client_id)
    return client_id, key_id, secret.hex()


async def test_v2_submit_then_watch_shows_counters_and_cost(
    services: Services, lots_csv: Path, pool: asyncpg.Pool, v2_key: tuple[str, str, str]
) -> None:
    created = services.gen("submit", str(lots_csv), "--languages", "en,ru", "--v2", v2=v2_key)
    assert created.exit_code == 0, created.output
    job = json.loads(created.stdout)
    assert (job["status"], job["total_lots"], job["languages"]) == ("pending", 2, ["en", "ru"])
    row = await pool.fetchrow(
        "SELECT client_id, api_version FROM jobs WHERE job_id = $1", uuid.UUID(job["job_id"])
    )
    assert row is not None
    assert (row["client_id"], row["api_version"]) == (v2_key[0], 2)

    await finish(pool, job["job_id"], cost="0.012345")
    watched = services.gen("watch", job["job_id"], "--interval", "0.1", "--timeout", "5", v2=v2_key)
    assert watched.exit_code == 0, watched.output
    assert watched.stdout.strip().endswith("2/2 done (1 completed, 1 failed), cost $0.012345")

    wrong = (v2_key[0], v2_key[1], "00" * 32)
    refused = services.gen("watch", job["job_id"], "--timeout", "1", v2=wrong)
    assert refused.exit_code == 1
    assert "HTTP 401" in refused.output


def run_curl(command: str) -> httpx.Response:
    """Execute a printed curl command line with httpx (method, URL, headers, exact body)."""
    words = shlex.split(command)
    assert words[:2] == ["curl", "-sS"]
    method, url, headers, body = "GET", "", {}, b""
    rest = iter(words[2:])
    for word in rest:
        if word == "-X":
            method = next(rest)
        elif word == "-H":
            name, _, value = next(rest).partition(": ")
            headers[name] = value
        elif word == "--data-binary":
            data = next(rest)
            body = Path(data[1:]).read_bytes() if data.startswith("@") else data.encode()
        else:
            url = word
    return httpx.request(method, url, headers=headers, content=body)


async def test_sign_prints_curl_commands_the_services_accept(
    services: Services, lots_csv: Path, tmp_path: Path, pool: asyncpg.Pool
) -> None:
    signed = services.gen("sign", "--lots", str(lots_csv), "--languages", "en,de")
    assert signed.exit_code == 0, signed.output
    command = signed.stdout.strip()
    assert command.startswith(f"curl -sS -X POST {services.ingest}/api/v1/generate-descriptions ")
    answer = run_curl(command)
    assert answer.status_code == 201, answer.text
    job_id = answer.json()["job_id"]
    assert await pool.fetchval(
        "SELECT languages FROM jobs WHERE job_id = $1", uuid.UUID(job_id)
    ) == ["en", "de"]
    forged = command.replace("Front bumper", "Rear bumper")
    assert run_curl(forged).status_code == 403

    body = tmp_path / "body.json"
    body.write_bytes(b'{"job_id": "%s"}' % job_id.encode())
    for path, status in (
        (f"/api/v1/batch-results/{job_id}", 202),
        ("/api/v1/batch-jobs?limit=2", 200),
    ):
        header_signed = services.gen("sign", "--body", str(body), "--path", path)
        assert header_signed.exit_code == 0, header_signed.output
        response = run_curl(header_signed.stdout.strip())
        assert response.status_code == status, response.text
        body_tampered = body.read_bytes()
        body.write_bytes(body_tampered + b" ")
        assert run_curl(header_signed.stdout.strip()).status_code == 401
        body.write_bytes(body_tampered)


async def test_sign_v2_request(
    services: Services, tmp_path: Path, lots_csv: Path, v2_key: tuple[str, str, str]
) -> None:
    created = json.loads(services.gen("submit", str(lots_csv), "--v2", v2=v2_key).stdout)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    signed = services.gen(
        "sign",
        "--v2",
        "--body",
        str(empty),
        "--path",
        f"/api/v2/jobs/{created['job_id']}/lots?limit=1",
        v2=v2_key,
    )
    assert signed.exit_code == 0, signed.output
    command = signed.stdout.strip()
    page = run_curl(command)
    assert page.status_code == 200, page.text
    assert [lot["lot_id"] for lot in page.json()["lots"]] == [] or page.json()["job_id"] == created[
        "job_id"
    ]
    assert run_curl(command).status_code == 401  # the nonce is single-use


async def test_cancel_and_list_jobs(services: Services, lots_csv: Path) -> None:
    job_id = job_id_of(services.gen("submit", str(lots_csv)).stdout)
    cancelled = services.gen("cancel", job_id)
    assert cancelled.exit_code == 0, cancelled.output
    assert json.loads(cancelled.stdout) == {
        "job_id": job_id,
        "message": "Job successfully cancelled",
        "status": "cancelled",
    }
    again = services.gen("cancel", job_id)
    assert again.exit_code == 1
    assert "Job cannot be cancelled" in again.output
    listed = services.gen("jobs", "--status", "cancelled", "--limit", "100")
    assert listed.exit_code == 0, listed.output
    assert job_id in {json.loads(line)["job_id"] for line in listed.stdout.splitlines()}
    watched = services.gen("watch", job_id, "--timeout", "5")
    assert watched.exit_code == 3
    assert f"{job_id} cancelled: 0/2 done" in watched.stdout


async def failed_delivery(pool: asyncpg.Pool, unique: str) -> str:
    msg_id = f"msg_cli_{unique}_{uuid.uuid4().hex[:6]}"
    async with pool.acquire() as conn:
        endpoint = await conn.fetchval(
            """INSERT INTO webhook_endpoints (url) VALUES ($1)
               ON CONFLICT (url) DO UPDATE SET updated_at = now() RETURNING id""",
            f"http://127.0.0.1:9/hook-{unique}",
        )
        await conn.execute(
            """INSERT INTO webhook_deliveries (msg_id, endpoint_id, kind, body, status, attempts)
               VALUES ($1, $2, 'completion', '{}'::bytea, 'exhausted', 8)""",
            msg_id,
            endpoint,
        )
    return msg_id


async def test_replay_one_delivery_and_since(
    services: Services, pool: asyncpg.Pool, unique: str
) -> None:
    since = await pool.fetchval(
        "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
    )
    one = await failed_delivery(pool, unique)
    replayed = services.gen("replay", one)
    assert replayed.exit_code == 0, replayed.output
    assert json.loads(replayed.stdout) == {"success": True, "replayed": [one], "count": 1}
    assert (
        await pool.fetchval("SELECT trigger FROM webhook_deliveries WHERE msg_id = $1", one)
        == "manual"
    )

    missing = services.gen("replay", "msg_does_not_exist")
    assert missing.exit_code == 1
    assert "HTTP 404" in missing.output

    two, three = await failed_delivery(pool, unique), await failed_delivery(pool, unique)
    bulk = services.gen("replay", "--since", since)
    assert bulk.exit_code == 0, bulk.output
    assert {two, three} <= set(json.loads(bulk.stdout)["replayed"])
    assert services.gen("replay").exit_code != 0  # neither an id nor --since


def captured(body: bytes, headers: dict[str, str]) -> bytes:
    head = "POST /hook HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return head.encode() + b"\r\n" + body


def test_verify_webhook_command() -> None:
    lot: dict[str, Any] = {
        "lot_id": "A1",
        "status": "completed",
        "descriptions": [],
        "missing_images": [],
        "pending_languages": [],
        "warnings": [],
    }
    body = payloads.lots_body(b"s3cret", [lot])
    headers = notifier_signing.headers(
        msg_id="msg_v", timestamp=int(time.time()), body=body, secrets=["s3cret"]
    )
    ok = run_gen("verify-webhook", "--secret", "s3cret", input=captured(body, headers))
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["lots"][0]["lot_id"] == "A1"
    bad = run_gen(
        "verify-webhook", "--secret", "s3cret", input=captured(body.replace(b"A1", b"A2"), headers)
    )
    assert bad.exit_code == 1
    assert "invalid" in bad.output


def test_submit_one_lot_goes_sync_and_is_signed(services: Services, tmp_path: Path) -> None:
    """One lot is a sync request; the service's 400 (past the 403 signature check) proves the
    signature and surfaces as exit code 1; a wrong key is refused with 403."""
    lot = tmp_path / "lot.json"
    lot.write_text('{"lot_id": "S1", "images": [], "additional_info": "Ø"}')
    answer = services.gen("submit", str(lot), "--languages", "en")
    assert answer.exit_code == 1
    assert 'HTTP 400: {"error": "images array cannot be empty"}' in answer.output
    wrong = services.gen("--shared-key", "not-the-key", "submit", str(lot))
    assert wrong.exit_code == 1
    assert 'HTTP 403: {"error": "Invalid signature"}' in wrong.output
