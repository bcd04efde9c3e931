"""Manage v2 API clients and keys (``python -m gen_ingest.keys``; DB from ``DB__URL``).

    python -m gen_ingest.keys add-client acme [--rate 50] [--burst 100]
    python -m gen_ingest.keys add-key acme [--key-id k2026]      # prints key id and hex secret
    python -m gen_ingest.keys set-status acme k2026 retiring [--not-after-s 86400]

Rotation: add a new key, hand it to the client, set the old one ``retiring`` with a
``--not-after-s`` grace period (both verify meanwhile), then ``revoked``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from gen_common import db, request_auth
from gen_common.settings import ServiceSettings


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gen_ingest.keys")
    sub = p.add_subparsers(dest="command", required=True)
    client = sub.add_parser("add-client")
    client.add_argument("client_id")
    client.add_argument("--name", default="")
    client.add_argument("--rate", type=float, default=None, help="requests per second")
    client.add_argument("--burst", type=int, default=None)
    key = sub.add_parser("add-key")
    key.add_argument("client_id")
    key.add_argument("--key-id", default=None)
    status = sub.add_parser("set-status")
    status.add_argument("client_id")
    status.add_argument("key_id")
    status.add_argument("status", choices=["active", "retiring", "revoked"])
    status.add_argument("--not-after-s", type=float, default=None)
    return p


async def run(args: argparse.Namespace, settings: ServiceSettings) -> str:
    async with db.open_pool(settings.db) as pool, pool.acquire() as conn:
        if args.command == "add-client":
            await request_auth.create_client(
                conn, args.client_id, name=args.name, rate_per_s=args.rate, rate_burst=args.burst
            )
            return f"client {args.client_id}"
        if args.command == "add-key":
            key_id, secret = await request_auth.create_key(conn, args.client_id, key_id=args.key_id)
            return f"client_id={args.client_id} key_id={key_id} secret={secret.hex()}"
        found = await request_auth.set_key_status(
            conn, args.client_id, args.key_id, args.status, not_after_s=args.not_after_s
        )
        return f"{args.key_id}: {args.status}" if found else "no such key"


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    out = asyncio.run(run(args, ServiceSettings()))
    sys.stdout.write(out + "\n")
    return 0 if out != "no such key" else 1


if __name__ == "__main__":
    raise SystemExit(main())
