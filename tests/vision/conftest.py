"""Vision fixtures: a real image host on 127.0.0.1, the OpenAI simulator as a subprocess, and
settings/dependencies wired to them (the SSRF allowlist admits 127.0.0.0/8 for the image host).

Image host paths: ``/img/N.jpg`` image/jpeg; ``/missing/`` 404; ``/html/`` text/html; ``/slow/``
answers after 10 s; ``/huge/`` announces 20 MB; ``/nohead/`` refuses HEAD (405) and serves a
ranged GET (206); ``/redirect/`` 302 to an image; ``/broken/`` serves an image here, but the
simulator answers OpenAI's download-error 400 for it.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
import uvicorn
from gen_common import llm, ratelimits
from gen_common.breaker import Breaker, BreakerSettings
from gen_common.image_check import ImageCheckOptions
from gen_common.safe_http import SafeClient
from gen_common.settings import OpenAISettings
from gen_common.ssrf import SsrfSettings
from gen_common.wakeup import Wakeup
from gen_vision import assess, worker
from gen_vision.images import ImageChecker
from gen_vision.settings import VisionOptions
from openai_sim.process import RunningSim, running
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 2000 + b"\xff\xd9"


async def _image(request: Request) -> Response:
    path = request.url.path
    if path.startswith("/missing/"):
        return Response(b"nope", 404, media_type="text/plain")
    if path.startswith("/html/"):
        return Response(b"<html></html>", 200, media_type="text/html")
    if path.startswith("/slow/"):
        await asyncio.sleep(10)
        return Response(JPEG, 200, media_type="image/jpeg")
    if path.startswith("/huge/"):
        return Response(b"", 200, headers={"content-length": "20000000"}, media_type="image/jpeg")
    if path.startswith("/nohead/"):
        if request.method == "HEAD":
            return Response(b"", 405)
        return Response(
            JPEG[:100],
            206,
            headers={"content-range": f"bytes 0-99/{len(JPEG)}"},
            media_type="image/jpeg",
        )
    if path.startswith("/redirect/"):
        return RedirectResponse("/img/redirected.jpg", 302)
    return Response(JPEG, 200, media_type="image/jpeg")


@dataclass(frozen=True, slots=True)
class ImageHost:
    base: str

    def url(self, path: str) -> str:
        return f"{self.base}/{path.lstrip('/')}"


@pytest.fixture(scope="session")
async def image_host() -> AsyncIterator[ImageHost]:
    app = Starlette(routes=[Route("/{path:path}", _image, methods=["GET", "HEAD"])])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1)
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield ImageHost(f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        await task
        sock.close()


@pytest.fixture(scope="session")
def sim_process() -> Iterator[RunningSim]:
    with running() as sim:
        yield sim


@pytest.fixture
def sim(sim_process: RunningSim) -> RunningSim:
    sim_process.admin.reset()
    return sim_process


LOOPBACK = SsrfSettings(allow_cidrs=["127.0.0.0/8"])


def vision_options(**overrides: Any) -> VisionOptions:
    values: dict[str, Any] = {
        "workers": 4,
        "lease_s": 5.0,
        "idle_poll_s": 0.2,
        "reap_interval_s": 0.5,
        "retry_base_s": 0.05,
        "retry_max_s": 0.5,
        "images": ImageCheckOptions(ssrf=LOOPBACK, head_timeout_s=1.0, get_timeout_s=1.0),
    }
    values.update(overrides)
    return VisionOptions(**values)


def openai_settings(sim: RunningSim, **overrides: Any) -> OpenAISettings:
    values: dict[str, Any] = {
        "api_key": SecretStr("sk-test"),
        "base_url": sim.base_url,
        "max_retries": 0,
        "timeout_s": 10.0,
    }
    values.update(overrides)
    return OpenAISettings(**values)


@dataclass
class Stack:
    deps: worker.Deps
    throttle: ratelimits.Throttle


@pytest.fixture
async def make_deps(pool: asyncpg.Pool, sim: RunningSim) -> AsyncIterator[Any]:
    """Build worker Deps against the simulator and a loopback-allowed image client."""
    opened: list[Any] = []

    async def build(**overrides: Any) -> Stack:
        breaker_settings = overrides.pop("breaker", BreakerSettings())
        options = vision_options(breaker=breaker_settings, **overrides)
        client = llm.client(openai_settings(sim))
        images = SafeClient(options.images.ssrf)
        opened.extend([client, images])
        breaker = Breaker(options.breaker)
        throttle = ratelimits.Throttle(options.throttle)
        deps = worker.Deps(
            pool=pool,
            assessor=assess.OpenAIAssessor(
                client,
                breaker=breaker,
                throttle=throttle,
                options=options,
                prompt=assess.load_prompt(options.prompt),
            ),
            checker=ImageChecker(images, options.images),
            breaker=breaker,
            options=options,
            wakeup=Wakeup(),
        )
        return Stack(deps=deps, throttle=throttle)

    yield build
    for thing in opened:
        await (thing.close() if hasattr(thing, "close") else thing.aclose())
