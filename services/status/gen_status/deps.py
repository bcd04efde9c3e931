"""What the routes receive: one frozen Deps built by the lifespan, and its Annotated alias."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, cast

import asyncpg
from fastapi import Depends, Request
from gen_common.kafka import Publisher

from gen_status.auth import HeaderVerifier
from gen_status.metrics import Metrics
from gen_status.settings import StatusOptions

MAX_BODY = 1_048_576


@dataclass(frozen=True, slots=True)
class Deps:
    pool: asyncpg.Pool
    publisher: Publisher
    verifier: HeaderVerifier
    options: StatusOptions
    metrics: Metrics


def get_deps(request: Request) -> Deps:
    return cast(Deps, request.app.state.deps)


DepsDep = Annotated[Deps, Depends(get_deps)]


class BodyTooLarge(Exception):
    """The request body exceeds MAX_BODY (answered 413)."""


async def read_body(request: Request) -> bytes:
    """The raw body (signed by the client), refusing more than MAX_BODY bytes while it streams."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise BodyTooLarge
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


async def signed(request: Request, deps: Deps, job_id: str | None) -> bool:
    """Does the request carry an acceptable X-Signature (contract Decision 2)?"""
    body = await read_body(request)
    return deps.verifier.verify(request.headers.get("x-signature"), body=body, job_id=job_id)
