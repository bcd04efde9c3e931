"""``gen``: submit lots, watch a job, fetch results, sign a request for curl, replay webhooks.

Exit codes: 0 success; 1 an API error or invalid input; 2 the job is not completed (results) or
not final when ``watch --timeout`` ran out; 3 the job ended failed or cancelled.
"""

from __future__ import annotations

import typer

from gen_client import cli_jobs, cli_tools
from gen_client.cli_base import options

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False)
app.callback()(options)
app.command()(cli_jobs.submit)
app.command("watch")(cli_jobs.watch_job)
app.command()(cli_jobs.results)
app.command()(cli_jobs.cancel)
app.command()(cli_jobs.jobs)
app.command()(cli_tools.sign)
app.command()(cli_tools.replay)
app.command("verify-webhook")(cli_tools.verify_webhook_command)


def main() -> None:
    app()
