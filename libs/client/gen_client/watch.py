"""``gen watch``: a live progress bar (lots done/failed, ETA, cost so far) until the job ends."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
from rich.progress import Progress as Bar

from gen_client.progress import Progress


def cost_text(cost_usd: float | None) -> str:
    return "cost n/a (v1 job)" if cost_usd is None else f"cost ${cost_usd:.6f}"


def summary(p: Progress) -> str:
    return (
        f"{p.job_id} {p.status}: {p.done}/{p.total} done "
        f"({p.completed} completed, {p.failed} failed), {cost_text(p.cost_usd)}"
    )


def watch(
    poll: Callable[[], Progress],
    *,
    console: Console,
    interval_s: float,
    timeout_s: float | None,
    sleep: Callable[[float], None] = time.sleep,
) -> Progress:
    """Poll until the job is final or ``timeout_s`` passed; returns the last progress."""
    current = poll()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("failed {task.fields[failed]}"),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[cost]}"),
    )
    with Bar(*columns, console=console) as bar:
        task = bar.add_task(
            current.status,
            total=current.total,
            completed=current.done,
            failed=current.failed,
            cost=cost_text(current.cost_usd),
        )
        while not current.final and (deadline is None or time.monotonic() < deadline):
            sleep(interval_s)
            current = poll()
            bar.update(
                task,
                description=current.status,
                completed=current.done,
                failed=current.failed,
                cost=cost_text(current.cost_usd),
            )
    return current
