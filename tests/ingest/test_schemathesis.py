"""Schemathesis against the checked-in OpenAPI document and the real process (F1): signed v1
and v2 requests, at least 200 examples per operation, zero 5xx and zero schema violations."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from gen_common import request_auth
from gen_common.events import Description, LotSubmitted, LotTranslated
from gen_common.settings import KafkaSettings

from tests.harness.processes import REPO, Child, child, eventually, settings_env
from tests.ingest.conftest import Pipeline
from tests.ingest.test_body_limit import free_port, healthy

pytestmark = [pytest.mark.pg, pytest.mark.kafka, pytest.mark.e2e]
V1_KEY = "schemathesis-key"
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
)


def reply(event: LotSubmitted) -> LotTranslated:
    return LotTranslated(
        job_id=event.job_id,
        lot_seq=event.lot_seq,
        lot_id=event.lot_id,
        descriptions=[Description(language="en", damages="<p>ok</p>")],
    )


@pytest.fixture
def ingest_process(
    migrated: str, kafka_settings: KafkaSettings, tmp_path: Path
) -> Iterator[tuple[Child, int]]:
    port = free_port()
    env = settings_env(
        DB__URL=migrated,
        KAFKA__BOOTSTRAP_SERVERS=kafka_settings.bootstrap_servers,
        KAFKA__TOPIC_PREFIX=kafka_settings.topic_prefix,
        INGEST__PORT=str(port),
        INGEST__SHARED_KEY=V1_KEY,
        INGEST__SYNC_BUDGET_S="20",
        INGEST__V1_RATE_PER_S="100000",
        INGEST__V1_RATE_BURST="100000",
        INGEST__PROBE_RATE_PER_S="100000",  # test-image-validation: its logic, not its 429s
        INGEST__PROBE_RATE_BURST="100000",
        LOG__LEVEL="WARNING",
    )
    with child("gen_ingest", env, tmp_path / "ingest.log") as proc:
        yield proc, port


async def test_schemathesis_finds_no_server_errors_or_schema_violations(
    ingest_process: tuple[Child, int],
    pipeline: Pipeline,
    pool: asyncpg.Pool,
    unique: str,
    tmp_path: Path,
) -> None:
    _, port = ingest_process
    pipeline.answer = reply
    client_id = f"st-{unique}"
    async with pool.acquire() as conn:
        await request_auth.create_client(conn, client_id, rate_per_s=100_000, rate_burst=100_000)
        key_id, secret = await request_auth.create_key(conn, client_id)
    await eventually(lambda: healthy(port), timeout=60, interval=0.2)
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.ingest.st_hooks",
        "ST_V1_KEY": V1_KEY,
        "ST_V2_CLIENT": client_id,
        "ST_V2_KEY_ID": key_id,
        "ST_V2_SECRET": secret.hex(),
        "PYTHONPATH": str(REPO),
    }
    proc = await asyncio.create_subprocess_exec(
        "schemathesis",
        "run",
        str(REPO / "services/ingest/openapi.json"),
        "--url",
        f"http://127.0.0.1:{port}",
        "--checks",
        CHECKS,
        "--max-examples",
        "200",
        "--seed",
        "1",
        "--request-timeout",
        "30",
        "--no-color",
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(proc.communicate(), 900)
    (tmp_path / "schemathesis.txt").write_bytes(output)
    text = output.decode(errors="replace")
    assert proc.returncode == 0, text[-6000:]
    assert "No issues found" in text
    generated = int(re.search(r"(\d+) generated", text).group(1))  # type: ignore[union-attr]
    assert generated >= 200 * 3  # three operations
