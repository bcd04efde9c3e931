"""``python -m openai_sim --port N [--host H] [--config JSON|@file]``."""

from __future__ import annotations

import argparse
import pathlib
from typing import Any

import orjson
import uvicorn

from openai_sim.app import create_app


def _config(value: str | None) -> dict[str, Any]:
    if not value:
        return {}
    text = pathlib.Path(value[1:]).read_text() if value.startswith("@") else value
    loaded = orjson.loads(text)
    if not isinstance(loaded, dict):
        raise SystemExit("--config must be a JSON object")
    return loaded


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="openai_sim", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--config",
        help="JSON object (or @path to a JSON file) merged into the defaults of openai_sim.config",
    )
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("--http", default="auto", help="uvicorn HTTP parser: auto|h11|httptools")
    parser.add_argument("--loop", default="auto", help="uvicorn event loop: auto|asyncio|uvloop")
    args = parser.parse_args(argv)
    app = create_app(_config(args.config))
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=False,
        lifespan="on",
    )
