"""API v2 clients and their keys (tables ``api_clients``, ``api_keys``): creating them, moving a
key through active / retiring / revoked, and the one lookup :mod:`gen_common.request_auth` makes.

A client may hold several keys at once (rotation: add a key, move the old one to ``retiring``
with an end, then ``revoked``); a key verifies while ``active`` or ``retiring``, inside
``not_before``/``not_after``, of a client whose status is ``active``.
"""

from __future__ import annotations

import re
import secrets

from gen_common.db import Conn

ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")  # client ids and key ids


async def load_secret(conn: Conn, client_id: str, key_id: str) -> bytes | None:
    """The secret of a key that may verify right now, or None."""
    row = await conn.fetchrow(
        """SELECT k.secret FROM api_keys k JOIN api_clients c USING (client_id)
           WHERE k.client_id = $1 AND k.key_id = $2 AND c.status = 'active'
             AND k.status IN ('active', 'retiring') AND k.not_before <= now()
             AND (k.not_after IS NULL OR k.not_after > now())""",
        client_id,
        key_id,
    )
    return None if row is None else bytes(row["secret"])


async def create_client(
    conn: Conn,
    client_id: str,
    *,
    name: str = "",
    rate_per_s: float | None = None,
    rate_burst: int | None = None,
) -> None:
    """Create a client (or update its name and limits)."""
    if not ID.fullmatch(client_id):
        raise ValueError("client id must match [A-Za-z0-9._-]{1,64}")
    await conn.execute(
        """INSERT INTO api_clients (client_id, name, rate_per_s, rate_burst)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (client_id) DO UPDATE
           SET name = EXCLUDED.name, rate_per_s = EXCLUDED.rate_per_s,
               rate_burst = EXCLUDED.rate_burst""",
        client_id,
        name,
        rate_per_s,
        rate_burst,
    )


async def create_key(
    conn: Conn, client_id: str, *, key_id: str | None = None, secret: bytes | None = None
) -> tuple[str, bytes]:
    """Add an active key to an existing client; returns (key id, secret)."""
    key_id = key_id or "k" + secrets.token_hex(6)
    secret = secret if secret is not None else secrets.token_bytes(32)
    if not ID.fullmatch(key_id):
        raise ValueError("key id must match [A-Za-z0-9._-]{1,64}")
    await conn.execute(
        "INSERT INTO api_keys (client_id, key_id, secret) VALUES ($1, $2, $3)",
        client_id,
        key_id,
        secret,
    )
    return key_id, secret


async def set_key_status(
    conn: Conn, client_id: str, key_id: str, status: str, *, not_after_s: float | None = None
) -> bool:
    """Move a key to active / retiring / revoked; ``not_after_s`` ends it that many seconds on."""
    result = await conn.execute(
        """UPDATE api_keys SET status = $3,
               not_after = CASE WHEN $4::float8 IS NULL THEN not_after
                                ELSE now() + make_interval(secs => $4::float8) END
           WHERE client_id = $1 AND key_id = $2""",
        client_id,
        key_id,
        status,
        not_after_s,
    )
    return result.endswith(" 1")
