"""Sync mode end to end: ingest (in-process) + real vision, translate and notifier processes, the
OpenAI simulator, and an image host on 127.0.0.1 — one lot in, the descriptions inline."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from pathlib import Path

import asyncpg
import pytest
import uvicorn
from gen_common import kafka
from gen_common.settings import KafkaSettings
from openai_sim.process import RunningSim, running
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.harness.processes import child, settings_env
from tests.ingest.conftest import MakeIngest, request_v1
from tests.ingest.test_body_limit import free_port

pytestmark = [pytest.mark.pg, pytest.mark.kafka, pytest.mark.e2e]
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 2000 + b"\xff\xd9"


async def _image(request: Request) -> Response:
    if request.url.path.startswith("/missing/"):
        return Response(b"nope", 404, media_type="text/plain")
    return Response(JPEG, 200, media_type="image/jpeg")


@pytest.fixture
async def image_base() -> AsyncIterator[str]:
    app = Starlette(routes=[Route("/{path:path}", _image, methods=["GET", "HEAD"])])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1)
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@pytest.fixture
async def topics(kafka_settings: KafkaSettings) -> None:
    """Create the topics once, before four processes race to create them."""
    await kafka.ensure_topics(kafka_settings)


@pytest.fixture
def pipeline_processes(
    migrated: str, kafka_settings: KafkaSettings, tmp_path: Path, topics: None
) -> Iterator[RunningSim]:
    with running() as sim, ExitStack() as stack:
        env = settings_env(
            DB__URL=migrated,
            KAFKA__BOOTSTRAP_SERVERS=kafka_settings.bootstrap_servers,
            KAFKA__TOPIC_PREFIX=kafka_settings.topic_prefix,
            KAFKA__PARTITIONS=str(kafka_settings.partitions),
            OPENAI__BASE_URL=sim.base_url,
            OPENAI__API_KEY="sk-test",
            VISION__IMAGES='{"ssrf": {"allow_cidrs": ["127.0.0.0/8"]}}',
            VISION__IDLE_POLL_S="0.2",
            TRANSLATE__IDLE_POLL_S="0.2",
            NOTIFIER__SHARED_KEY="test-key",
            NOTIFIER__HTTP_PORT=str(free_port()),
            NOTIFIER__SSRF__ALLOW_CIDRS='["127.0.0.1/32"]',
            LOG__LEVEL="WARNING",
        )
        for module in ("gen_vision", "gen_translate", "gen_notifier"):
            stack.enter_context(child(module, env, tmp_path / f"{module}.log"))
        yield sim


async def test_one_lot_through_the_real_pipeline(
    make_ingest: MakeIngest,
    pipeline_processes: RunningSim,
    image_base: str,
    kafka_settings: KafkaSettings,
    pool: asyncpg.Pool,
    unique: str,
) -> None:
    ingest = await make_ingest(sync_budget_s=90)
    images = [{"url": f"{image_base}/img/{unique}/{i}.jpg"} for i in range(5)]
    lot = {"lot_id": f"E2E-{unique}", "additional_info": "front bumper", "images": images}
    response = await ingest.v1(request_v1([lot], ["en", "ru", "de"]))
    assert response.status_code == 200, response.text
    body = response.json()
    [result] = body["lots"]
    assert result["lot_id"] == f"E2E-{unique}"
    assert [d["language"] for d in result["descriptions"]] == ["en", "ru", "de"]
    assert all(d["damages"] for d in result["descriptions"]), body
    assert "missing_images" not in result, body
    assert result["descriptions"][0]["damages"].startswith("<p>"), body
    assert body["version"] == "1.0.0"

    bad = [{"url": f"{image_base}/missing/{unique}/{i}.jpg"} for i in range(3)]
    failed = await ingest.v1(request_v1([lot | {"images": bad}], ["en"]))
    assert failed.status_code == 400, failed.text
    assert failed.json()["error"] == "image_unreachable"
    assert sorted(failed.json()["missing_images"]) == sorted(i["url"] for i in bad)
