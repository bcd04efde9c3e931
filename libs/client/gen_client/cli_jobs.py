"""``gen submit``, ``gen watch``, ``gen results``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from gen_client import formats, progress
from gen_client.cli_base import calling, err, languages_of, print_json
from gen_client.lots import read_lots
from gen_client.watch import summary, watch


def submit(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="LOT.json, FILE.jsonl or FILE.csv", exists=True)],
    languages: Annotated[str, typer.Option(help="comma-separated codes")] = "en",
    webhook: Annotated[str | None, typer.Option(help="job completion webhook URL")] = None,
    sync: Annotated[bool, typer.Option(help="send every lot as its own sync request")] = False,
    v2: Annotated[bool, typer.Option(help="create the job with a signed v2 request")] = False,
) -> None:
    """Submit lots: 1 lot (or --sync) prints the answers; 2+ lots print the job id."""
    with calling(ctx) as client:
        lots, codes = read_lots(file), languages_of(languages)
        if v2:
            print_json(client.create_job(lots, codes, webhook_url=webhook))
        elif sync or len(lots) == 1:
            for lot in lots:
                print_json(client.submit_sync(lot, codes))
        else:
            job_id = client.submit_batch(lots, codes, webhook_url=webhook)
            typer.echo(job_id)
            err.print(f"accepted {len(lots)} lots; follow with: gen watch {job_id}")


def watch_job(
    ctx: typer.Context,
    job_id: str,
    interval: Annotated[float, typer.Option(help="seconds between polls")] = 1.0,
    timeout: Annotated[float | None, typer.Option(help="give up after this many s")] = None,
) -> None:
    """Live progress of a job (lots done/failed, ETA, cost) until it ends."""
    with calling(ctx) as client:
        last = watch(
            lambda: progress.fetch(client, job_id),
            console=err,
            interval_s=interval,
            timeout_s=timeout,
        )
    typer.echo(summary(last))
    if not last.final:
        raise typer.Exit(2)
    if last.status != "completed":
        raise typer.Exit(3)


def results(
    ctx: typer.Context,
    job_id: str,
    format: Annotated[str, typer.Option("--format", help="json, jsonl or csv")] = "jsonl",
    output: Annotated[Path | None, typer.Option("-o", "--output", help="file")] = None,
) -> None:
    """Results of a completed job as the original JSON file, JSON Lines or CSV."""
    if format not in ("json", "jsonl", "csv"):
        raise typer.BadParameter("json, jsonl or csv", param_hint="--format")
    with calling(ctx) as client:
        data = client.download(job_id, format="json" if format == "json" else "jsonl")
    if format == "csv":
        data = formats.results_csv(data).encode()
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        output.write_bytes(data)
        err.print(f"wrote {output}")


def cancel(ctx: typer.Context, job_id: str) -> None:
    """Cancel a job (queued lots are not processed; finished lots stay)."""
    with calling(ctx) as client:
        print_json(client.cancel(job_id))


def jobs(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(help="only jobs in this status")] = None,
    limit: Annotated[int, typer.Option(help="page size (max 100)")] = 10,
    offset: Annotated[int, typer.Option(help="skip this many")] = 0,
) -> None:
    """List jobs, newest first (one JSON object per line)."""
    with calling(ctx) as client:
        page = client.list_jobs(status=status, limit=limit, offset=offset)
    for job in page["jobs"]:
        print_json(job)
    err.print(f"{len(page['jobs'])} of {page['pagination']['total']} jobs")
