"""Answers carrying a job's lots: one piece when they fit in one chunk, else streamed.

Lots are read by keyset on the primary key (``lot_seq``) in chunks of ``download_chunk`` rows, so a
50,000-lot job never sits in memory whole; a job that fits in one chunk is answered in one piece,
with Content-Length, like the original.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import asyncpg
from starlette.responses import Response, StreamingResponse

from gen_status import store
from gen_status.deps import Deps

Render = Callable[[list[asyncpg.Record], bool], bytes]


async def first_chunk(
    deps: Deps, job: asyncpg.Record, *, finished_only: bool = False
) -> list[asyncpg.Record]:
    return await store.lots_page(
        deps.pool, job["job_id"], limit=deps.options.download_chunk, finished_only=finished_only
    )


async def _chunks(
    deps: Deps, job: asyncpg.Record, first: list[asyncpg.Record], finished_only: bool
) -> AsyncIterator[list[asyncpg.Record]]:
    chunk = first
    while chunk:
        yield chunk
        if len(chunk) < deps.options.download_chunk:
            return
        chunk = await store.lots_page(
            deps.pool,
            job["job_id"],
            after_seq=chunk[-1]["lot_seq"],
            limit=deps.options.download_chunk,
            finished_only=finished_only,
        )


def respond(
    deps: Deps,
    job: asyncpg.Record,
    first: list[asyncpg.Record],
    *,
    head: bytes,
    render: Render,
    tail: bytes,
    media_type: str,
    headers: dict[str, str] | None = None,
    finished_only: bool = False,
) -> Response:
    """``head``, every lot rendered chunk by chunk (``render(chunk, is_first)``), ``tail``."""
    if len(first) < deps.options.download_chunk:
        return Response(head + render(first, True) + tail, media_type=media_type, headers=headers)

    async def body() -> AsyncIterator[bytes]:
        yield head
        is_first = True
        async for chunk in _chunks(deps, job, first, finished_only):
            yield render(chunk, is_first)
            is_first = False
        yield tail

    return StreamingResponse(body(), media_type=media_type, headers=headers)


def split_around(body: bytes, marker: bytes) -> tuple[bytes, bytes]:
    """Split a compact JSON body around an empty list value (``"results":[]``) to stream into.

    A key's quotes are escaped inside JSON strings, so the marker can only match the key itself.
    """
    at = body.index(marker)
    return body[: at + len(marker) - 1], body[at + len(marker) - 1 :]
