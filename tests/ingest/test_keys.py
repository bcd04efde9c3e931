"""The key management CLI (python -m gen_ingest.keys) against real PostgreSQL."""

from __future__ import annotations

import asyncpg
import pytest
from gen_common.settings import ServiceSettings
from gen_ingest import keys

pytestmark = pytest.mark.pg


async def test_add_client_key_and_rotate(
    make_settings: object, pool: asyncpg.Pool, unique: str
) -> None:
    assert callable(make_settings)
    settings: ServiceSettings = make_settings(ServiceSettings)
    client = f"cli-{unique}"
    assert (
        await keys.run(keys.parser().parse_args(["add-client", client, "--rate", "5"]), settings)
        == f"client {client}"
    )
    out = await keys.run(keys.parser().parse_args(["add-key", client, "--key-id", "k1"]), settings)
    assert out.startswith(f"client_id={client} key_id=k1 secret=")
    secret = bytes.fromhex(out.rsplit("=", 1)[1])
    row = await pool.fetchrow(
        "SELECT secret, status FROM api_keys WHERE client_id = $1 AND key_id = 'k1'", client
    )
    assert row is not None
    assert bytes(row["secret"]) == secret
    assert row["status"] == "active"
    args = keys.parser().parse_args(["set-status", client, "k1", "retiring", "--not-after-s", "60"])
    assert await keys.run(args, settings) == "k1: retiring"
    missing = keys.parser().parse_args(["set-status", client, "nope", "revoked"])
    assert await keys.run(missing, settings) == "no such key"
    assert (
        await pool.fetchval("SELECT rate_per_s FROM api_clients WHERE client_id = $1", client) == 5
    )
