"""Answer a repeated request with the first answer: same status, same body, no second job.

A request is identified by its ``Idempotency-Key`` header (kept ``idempotency_ttl_s``) or, for v1
requests without one, by the SHA-256 of its raw body (kept ``duplicate_window_s``). The first
request claims the key; repeats wait briefly for it to finish and get its stored answer; the same
key with a different body is 422. Answers of 5xx are not kept, so a failed request can be retried.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Awaitable, Callable

import asyncpg
from gen_common.db import DB_TROUBLE
from starlette.background import BackgroundTask
from starlette.responses import Response

from gen_ingest import store
from gen_ingest.request_body import Rejected
from gen_ingest.wire import raw

log = logging.getLogger(__name__)
WAIT_S = 10.0
POLL_S = 0.05
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
REPLAYED = {"Idempotent-Replayed": "true"}


def key_of(
    header: str | None, body: bytes | bytearray, *, dedupe: bool
) -> tuple[str, bytes] | None:
    """(record key, request hash) for this request, or None when nothing identifies it."""
    return key_of_digest(header, hashlib.sha256(body).digest(), dedupe=dedupe)


def key_of_digest(header: str | None, digest: bytes, *, dedupe: bool) -> tuple[str, bytes] | None:
    """:func:`key_of` for a body hashed while it streamed in (SHA-256 ``digest``)."""
    if header is not None:
        if not _KEY.fullmatch(header):
            raise Rejected(400, "Idempotency-Key must be 1-255 printable ASCII characters")
        return "key:" + header, digest
    if dedupe:
        return "body:" + digest.hex(), digest
    return None


async def once(
    pool: asyncpg.Pool,
    *,
    client_id: str,
    key: str,
    request_hash: bytes,
    ttl_s: float,
    produce: Callable[[], Awaitable[Response]],
) -> Response:
    async with pool.acquire() as conn:
        earlier = await store.claim_key(conn, client_id, key, request_hash, ttl_s)
        deadline = asyncio.get_running_loop().time() + WAIT_S
        while (
            earlier is not None
            and earlier.status_code is None
            and earlier.request_hash == request_hash
            and asyncio.get_running_loop().time() < deadline
        ):
            await asyncio.sleep(POLL_S)
            earlier = await store.earlier(conn, client_id, key)
            if earlier is None:  # the first request failed and let go of the key
                earlier = await store.claim_key(conn, client_id, key, request_hash, ttl_s)
    if earlier is not None:
        if earlier.request_hash != request_hash:
            raise Rejected(422, "Idempotency-Key was already used with a different request")
        if earlier.status_code is None or earlier.response is None:
            raise Rejected(409, "An identical request is still being processed")
        return raw(earlier.status_code, earlier.response, REPLAYED)
    try:
        response = await produce()
    except BaseException:
        await asyncio.shield(_release(pool, client_id, key))
        raise
    if response.status_code >= 500:
        await _release(pool, client_id, key)
        return response
    # Stored once the answer is sent, one round trip less before it: a repeat arriving in
    # between waits for the stored answer as for any first request still running.
    assert response.background is None
    response.background = BackgroundTask(
        _finish, pool, client_id, key, response.status_code, bytes(response.body)
    )
    return response


async def _finish(
    pool: asyncpg.Pool, client_id: str, key: str, status_code: int, body: bytes
) -> None:
    try:
        async with pool.acquire() as conn:
            await store.finish_key(conn, client_id, key, status_code, body)
    except DB_TROUBLE as exc:  # repeats get 409 until the key expires; the answer was given
        log.warning("idempotency answer not stored", extra={"error": repr(exc)})


async def _release(pool: asyncpg.Pool, client_id: str, key: str) -> None:
    async with pool.acquire() as conn:
        await store.release_key(conn, client_id, key)
