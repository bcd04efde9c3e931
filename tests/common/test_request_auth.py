"""v2 request authentication: signature matrix (V1), replay (V2), skew (V3), rotation (V4),
malformed headers (V5) — against real PostgreSQL."""

from __future__ import annotations

import contextlib
import time

import asyncpg
import pytest
from gen_common import request_auth
from gen_common.request_auth import AuthError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.pg

PATH = "/api/v2/jobs"
BODY = b'{"lots":[]}'


@pytest.fixture
async def client(pool: asyncpg.Pool, unique: str) -> tuple[str, str, bytes]:
    async with pool.acquire() as conn:
        await request_auth.create_client(conn, f"c-{unique}")
        key_id, secret = await request_auth.create_key(conn, f"c-{unique}")
    return f"c-{unique}", key_id, secret


def lower(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


async def check(
    pool: asyncpg.Pool,
    headers: dict[str, str],
    *,
    body: bytes = BODY,
    path: str = PATH,
    method: str = "POST",
    query: str = "",
    now: float | None = None,
) -> request_auth.Verified:
    async with pool.acquire() as conn:
        return await request_auth.verify(
            conn,
            method=method,
            path=path,
            query=query,
            headers=lower(headers),
            body=body,
            now=now,
        )


async def test_a_signed_request_verifies_once_and_a_replay_fails(
    pool: asyncpg.Pool, client: tuple[str, str, bytes]
) -> None:
    client_id, key_id, secret = client
    headers = request_auth.sign(
        secret, client_id=client_id, key_id=key_id, method="POST", path=PATH, body=BODY
    )
    verified = await check(pool, headers)
    assert verified == request_auth.Verified(client_id=client_id, key_id=key_id)
    with pytest.raises(AuthError, match="replayed"):
        await check(pool, headers)


@pytest.mark.parametrize(("offset", "ok"), [(-299, True), (299, True), (-301, False), (301, False)])
async def test_clock_skew_window(
    pool: asyncpg.Pool, client: tuple[str, str, bytes], offset: int, ok: bool
) -> None:
    client_id, key_id, secret = client
    now = time.time()
    headers = request_auth.sign(
        secret,
        client_id=client_id,
        key_id=key_id,
        method="POST",
        path=PATH,
        body=BODY,
        timestamp=int(now) + offset,
    )
    if ok:
        await check(pool, headers, now=int(now))
    else:
        with pytest.raises(AuthError, match="timestamp"):
            await check(pool, headers, now=int(now))


async def test_rotation_active_and_retiring_verify_revoked_and_expired_do_not(
    pool: asyncpg.Pool, client: tuple[str, str, bytes]
) -> None:
    client_id, old_id, old_secret = client
    async with pool.acquire() as conn:
        new_id, new_secret = await request_auth.create_key(conn, client_id)
        assert await request_auth.set_key_status(conn, client_id, old_id, "retiring")
    for key_id, secret in ((old_id, old_secret), (new_id, new_secret)):
        await check(
            pool,
            request_auth.sign(
                secret, client_id=client_id, key_id=key_id, method="POST", path=PATH, body=BODY
            ),
        )
    async with pool.acquire() as conn:
        await request_auth.set_key_status(conn, client_id, old_id, "revoked")
        await request_auth.set_key_status(conn, client_id, new_id, "active", not_after_s=-1)
    for key_id, secret in ((old_id, old_secret), (new_id, new_secret)):
        with pytest.raises(AuthError, match="unknown or inactive"):
            await check(
                pool,
                request_auth.sign(
                    secret, client_id=client_id, key_id=key_id, method="POST", path=PATH, body=BODY
                ),
            )
    # the right secret under another key id is still refused (keys are selected by id)
    async with pool.acquire() as conn:
        third_id, _ = await request_auth.create_key(conn, client_id)
    with pytest.raises(AuthError, match="bad signature"):
        await check(
            pool,
            request_auth.sign(
                new_secret,
                client_id=client_id,
                key_id=third_id,
                method="POST",
                path=PATH,
                body=BODY,
            ),
        )


FIELDS = ["method", "path", "query", "body", "timestamp", "nonce", "client", "signature"]


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(field=st.sampled_from(FIELDS), body=st.binary(max_size=64), flip=st.integers(0, 1000))
async def test_changing_any_signed_part_fails(
    pool: asyncpg.Pool, client: tuple[str, str, bytes], field: str, body: bytes, flip: int
) -> None:
    client_id, key_id, secret = client
    headers = request_auth.sign(
        secret,
        client_id=client_id,
        key_id=key_id,
        method="POST",
        path=PATH,
        query="a=1&b=2",
        body=body,
    )
    kwargs: dict[str, object] = {"body": body, "query": "a=1&b=2"}
    if field == "method":
        kwargs["method"] = "PUT"
    elif field == "path":
        kwargs["path"] = PATH + "x"
    elif field == "query":
        kwargs["query"] = "a=1&b=3"
    elif field == "body":
        kwargs["body"] = body + bytes([flip % 256])
    elif field == "timestamp":
        headers["X-Timestamp"] = str(int(headers["X-Timestamp"]) - 1)
    elif field == "nonce":
        headers["X-Nonce"] = headers["X-Nonce"][:-1] + (
            "A" if headers["X-Nonce"][-1] != "A" else "B"
        )
    elif field == "client":
        headers["X-Client-Id"] = client_id + "x"
    else:
        sig = headers["X-Signature"]
        pos = 3 + flip % 64
        headers["X-Signature"] = sig[:pos] + ("0" if sig[pos] != "0" else "1") + sig[pos + 1 :]
    with pytest.raises(AuthError):
        await check(pool, headers, **kwargs)  # type: ignore[arg-type]


MALFORMED = [
    {},
    {"X-Signature": "v2="},
    {"X-Signature": "v1=" + "a" * 64},
    {"X-Signature": "v2=" + "g" * 64},
    {"X-Signature": "v2=" + "a" * 63},
    {"X-Signature": "v2=" + "a" * 64 + ",v2=" + "b" * 64},
    {"X-Timestamp": "-5"},
    {"X-Timestamp": "1e9"},
    {"X-Timestamp": "9" * 40},
    {"X-Nonce": "short"},
    {"X-Nonce": "n" * 65},
    {"X-Nonce": "ñ" * 20},
    {"X-Client-Id": ""},
    {"X-Client-Id": "a b"},
    {"X-Key-Id": "k" * 65},
    {"X-Content-SHA256": "zz"},
]


@pytest.mark.parametrize("change", MALFORMED)
async def test_malformed_headers_are_auth_errors(
    pool: asyncpg.Pool, client: tuple[str, str, bytes], change: dict[str, str]
) -> None:
    client_id, key_id, secret = client
    headers = request_auth.sign(
        secret, client_id=client_id, key_id=key_id, method="POST", path=PATH, body=BODY
    )
    headers = headers | change if change else {}
    with pytest.raises(AuthError):
        await check(pool, headers)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(request_auth.HEADER_NAMES), st.text(max_size=80)))
def test_header_parsing_never_raises_anything_but_auth_error(headers: dict[str, str]) -> None:
    with contextlib.suppress(AuthError):
        request_auth.parse_headers(headers)


async def test_purge_drops_old_nonces(pool: asyncpg.Pool, unique: str) -> None:
    async with pool.acquire() as conn:
        assert await request_auth.remember_nonce(conn, f"p-{unique}", "n" * 22)
        await conn.execute(
            "UPDATE request_nonces SET seen_at = now() - interval '20 minutes'"
            " WHERE client_id = $1",
            f"p-{unique}",
        )
        assert await request_auth.purge_nonces(conn) >= 1
        assert await request_auth.remember_nonce(conn, f"p-{unique}", "n" * 22)
