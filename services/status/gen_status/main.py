"""Entry point: build StatusSettings once and serve the app with uvicorn.

One worker (default): the app runs inside ``gen_common.service.run``. With ``STATUS__WORKERS`` > 1,
uvicorn's supervisor forks the workers and each builds the settings from the environment once
(``app_from_env``), since settings objects cannot cross the process boundary.
"""

from __future__ import annotations

import uvicorn
from gen_common import http_server, service

from gen_status.app import create_app
from gen_status.settings import StatusSettings

_UVICORN = {"http": "httptools", "loop": "uvloop", "access_log": False, "log_config": None}


def app_from_env() -> object:
    return create_app(StatusSettings())


async def run(settings: StatusSettings) -> None:
    await http_server.serve(
        create_app(settings),
        host=settings.status.host,
        port=settings.status.port,
        lifespan="on",
        http="httptools",
        loop="uvloop",
    )


def main() -> None:
    settings = StatusSettings()
    if settings.status.workers == 1:
        service.run(run(settings), settings.log, name="status")
        return
    service.configure_logging(settings.log, "status")
    uvicorn.run(
        "gen_status.main:app_from_env",
        factory=True,
        host=settings.status.host,
        port=settings.status.port,
        workers=settings.status.workers,
        lifespan="on",
        **_UVICORN,  # type: ignore[arg-type]
    )
