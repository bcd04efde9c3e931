"""What every ``gen`` command shares: the global options, the client, error handling."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console

from gen_client.client import DEV_BASE_URL, DEV_SHARED_KEY, Client
from gen_client.errors import ApiError, NotCompleted
from gen_client.lots import LotFileError

err = Console(stderr=True)


@dataclass(frozen=True)
class Config:
    base_url: str
    shared_key: str
    client_id: str | None
    key_id: str | None
    secret: str | None
    ingest_url: str | None
    status_url: str | None
    notifier_url: str | None

    def client(self) -> Client:
        return Client(
            self.base_url,
            shared_key=self.shared_key,
            client_id=self.client_id,
            key_id=self.key_id,
            secret=bytes.fromhex(self.secret) if self.secret else None,
            ingest_url=self.ingest_url,
            status_url=self.status_url,
            notifier_url=self.notifier_url,
        )


def _opt(env: str, text: str) -> Any:
    return typer.Option(envvar=env, help=text)


def options(
    ctx: typer.Context,
    base_url: Annotated[str, _opt("GEN_BASE_URL", "the proxy")] = DEV_BASE_URL,
    shared_key: Annotated[str, _opt("GEN_SHARED_KEY", "v1 HMAC key")] = DEV_SHARED_KEY,
    client_id: Annotated[str | None, _opt("GEN_CLIENT_ID", "v2 client id")] = None,
    key_id: Annotated[str | None, _opt("GEN_KEY_ID", "v2 key id")] = None,
    secret: Annotated[str | None, _opt("GEN_SECRET", "v2 key secret (hex)")] = None,
    ingest_url: Annotated[str | None, _opt("GEN_INGEST_URL", "ingest, without proxy")] = None,
    status_url: Annotated[str | None, _opt("GEN_STATUS_URL", "status, without proxy")] = None,
    notifier_url: Annotated[str | None, _opt("GEN_NOTIFIER_URL", "notifier, no proxy")] = None,
) -> None:
    """Client of the Generation Service (base URL and keys from options or GEN_* variables)."""
    ctx.obj = Config(
        base_url, shared_key, client_id, key_id, secret, ingest_url, status_url, notifier_url
    )


@contextmanager
def calling(ctx: typer.Context) -> Iterator[Client]:
    """A client for one command; API and transport errors end the command with exit code 1."""
    try:
        with ctx.obj.client() as client:
            yield client
    except NotCompleted as exc:
        err.print(f"job not completed (status: {exc.job_status})")
        raise typer.Exit(2) from None
    except ApiError as exc:
        err.print(f"[red]error[/red] HTTP {exc.status}: {json.dumps(exc.body)}")
        raise typer.Exit(1) from None
    except (httpx.TransportError, LotFileError, ValueError) as exc:
        err.print(f"[red]error[/red] {exc}")
        raise typer.Exit(1) from None


def languages_of(text: str) -> list[str]:
    return [code.strip() for code in text.split(",") if code.strip()]


def print_json(value: object) -> None:
    typer.echo(json.dumps(value, ensure_ascii=False))
