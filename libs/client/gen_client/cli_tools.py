"""``gen sign``, ``gen replay``, ``gen verify-webhook``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from gen_client import formats
from gen_client.cli_base import calling, err, languages_of, print_json
from gen_client.lots import read_lots
from gen_client.signing import hmac_hex, v2_headers
from gen_client.webhooks import WebhookVerificationError, verify_webhook


def sign(
    ctx: typer.Context,
    lots: Annotated[Path | None, typer.Option(help="lots file -> generate-descriptions")] = None,
    body: Annotated[Path | None, typer.Option(help="raw body -> X-Signature")] = None,
    path: Annotated[str, typer.Option(help="route of --body")] = "/api/v1/batch-jobs",
    method: Annotated[str | None, typer.Option(help="default GET (POST for /cancel)")] = None,
    languages: Annotated[str, typer.Option(help="comma-separated codes")] = "en",
    webhook: Annotated[str | None, typer.Option(help="job completion webhook URL")] = None,
    v2: Annotated[bool, typer.Option(help="--body as a signed v2 request")] = False,
) -> None:
    """Print a curl command carrying a valid signature."""
    if (lots is None) == (body is None):
        raise typer.BadParameter("give exactly one of --lots and --body")
    with calling(ctx) as client:
        if lots is not None:
            request = client.generate_body(read_lots(lots), languages_of(languages), webhook)
            url = client.url_for("POST", "/api/v1/generate-descriptions")
            headers = {"Content-Type": "application/json"}
            typer.echo(formats.curl("POST", url, headers, data=json.dumps(request)))
            return
        assert body is not None
        raw = body.read_bytes()
        verb = method or ("POST" if path.rstrip("/").endswith("/cancel") else "GET")
        headers = {"Content-Type": "application/json"}
        if v2:
            if client.v2 is None:
                raise ValueError("--v2 needs GEN_CLIENT_ID, GEN_KEY_ID and GEN_SECRET")
            client_id, key_id, secret = client.v2
            route, _, query = path.partition("?")
            headers |= v2_headers(
                secret,
                client_id=client_id,
                key_id=key_id,
                method=verb,
                path=route,
                query=query,
                body=raw,
            )
        else:
            headers["X-Signature"] = hmac_hex(client.key, raw)
        url = client.url_for(verb, path)
        typer.echo(formats.curl(verb, url, headers, data_file=str(body)))


def replay(
    ctx: typer.Context,
    delivery_id: Annotated[str | None, typer.Argument(help="webhook-id of one delivery")] = None,
    since: Annotated[str | None, typer.Option(help="RFC 3339: every failed one since")] = None,
) -> None:
    """Send failed webhook deliveries again (same webhook-id, new timestamp)."""
    if (delivery_id is None) == (since is None):
        raise typer.BadParameter("give a DELIVERY_ID or --since, not both")
    with calling(ctx) as client:
        answer = client.replay(delivery_id) if delivery_id else client.replay_since(str(since))
    print_json(answer)


def verify_webhook_command(
    secret: Annotated[str, typer.Option(envvar="GEN_WEBHOOK_SECRET", help="endpoint secret")],
    file: Annotated[Path | None, typer.Option(help="captured request (default stdin)")] = None,
    tolerance: Annotated[int, typer.Option(help="max age of webhook-timestamp, s")] = 300,
) -> None:
    """Verify a captured webhook request (headers, blank line, body); prints its JSON body."""
    raw = file.read_bytes() if file is not None else sys.stdin.buffer.read()
    try:
        headers, body = formats.parse_captured(raw)
        payload = verify_webhook(body, headers, secret, tolerance_s=tolerance)
    except (WebhookVerificationError, ValueError) as exc:
        err.print(f"[red]invalid[/red] {exc}")
        raise typer.Exit(1) from None
    err.print("[green]valid[/green]")
    print_json(payload)
