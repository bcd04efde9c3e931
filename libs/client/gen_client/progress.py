"""One job's progress for ``gen watch``: counters from batch-status, cost from the v2 job body.

v1 answers carry the counters but no cost; the signed v2 job body adds ``usage.cost_usd``. A job
another client created (every v1 job) is "not found" on v2, so its cost stays unknown.
"""

from __future__ import annotations

from dataclasses import dataclass

from gen_client.client import Client
from gen_client.errors import ApiError

FINAL = frozenset({"completed", "failed", "cancelled"})


@dataclass(frozen=True, slots=True)
class Progress:
    job_id: str
    status: str
    total: int
    completed: int
    failed: int
    cost_usd: float | None

    @property
    def done(self) -> int:
        return self.completed + self.failed

    @property
    def final(self) -> bool:
        return self.status in FINAL


def fetch(client: Client, job_id: str) -> Progress:
    if client.v2 is not None:
        try:
            job = client.job_v2(job_id)
        except ApiError as exc:
            if exc.status != 404:
                raise
        else:
            return Progress(
                job_id=job_id,
                status=job["status"],
                total=job["total_lots"],
                completed=job["completed_lots"],
                failed=job["failed_lots"],
                cost_usd=float(job["usage"]["cost_usd"]),
            )
    body = client.batch_status(job_id)
    counters = body["progress"]
    return Progress(
        job_id=job_id,
        status=body["status"],
        total=counters["total_lots"],
        completed=counters["processed_lots"],
        failed=counters["failed_lots"],
        cost_usd=None,
    )
