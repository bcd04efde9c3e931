"""The bytes each delivery carries (built once, stored, and sent unchanged on every attempt).

- W2 (contract §7.2) per lot webhook URL: ``{"version":"1.0.0","lots":[...],"signature":...}``;
  each lot has ``lot_id``, ``status``, ``descriptions`` and, when not empty, ``missing_images``,
  ``pending_languages``, ``warnings``, ``error`` (failed lots: code and message). ``signature`` is
  the contract's HMAC over ``lots`` (gen_common.signing.sign_lots).
- W1 (contract §7.2) to the job's ``webhook_url`` when the job ends (completed, failed,
  cancelled), plus ``event``, ``cancelled_lots`` and ``api_version``.
- v2 jobs (Standard Webhooks style): ``{"type","timestamp","data"}`` per lot (``lot.completed``
  / ``lot.failed``) and at the end (``job.completed`` / ``job.failed`` / ``job.cancelled``,
  data = W1).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from gen_common.signing import sign_lots

COMPLETION_NS = uuid.UUID("6d1f4f3e-7a52-4b8e-9d0b-0e6c1f1a2b3c")


def dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def new_msg_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def completion_msg_id(job_id: uuid.UUID, url: str) -> str:
    """Deterministic: whoever ends the job, its completion is enqueued once per URL."""
    return f"msg_{uuid.uuid5(COMPLETION_NS, f'{job_id}|{url}').hex}"


def v1_time(when: datetime) -> str:
    return when.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds")


def v2_time(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def lot_entry(lot: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "lot_id": lot["lot_id"],
        "status": lot["status"],
        "descriptions": lot["descriptions"] or [],
    }
    for key in ("missing_images", "pending_languages", "warnings"):
        if lot[key]:
            entry[key] = list(lot[key])
    if lot["status"] != "completed":
        entry["error"] = {
            "code": lot["error_code"] or lot["status"],
            "message": lot["error_message"] or "",
        }
    return entry


def lots_body(key: bytes, lots: Sequence[Any]) -> bytes:
    entries = [lot_entry(lot) for lot in lots]
    return dumps({"version": "1.0.0", "lots": entries, "signature": sign_lots(key, entries)})


def completion_data(job: Any, now: datetime, base_url: str) -> dict[str, Any]:
    total = job["total_lots"]
    done, failed = job["completed_lots"], job["failed_lots"]
    return {
        "job_id": str(job["job_id"]),
        "status": job["status"],
        "timestamp": v1_time(now),
        "total_lots": total,
        "completed_lots": done,
        "failed_lots": failed,
        "result_url": f"{base_url}/api/v1/batch-results/{job['job_id']}",
        "event": f"job.{job['status']}",
        "cancelled_lots": max(0, total - done - failed) if job["status"] == "cancelled" else 0,
        "api_version": job["api_version"],
    }


def completion_body(job: Any, now: datetime, base_url: str) -> bytes:
    data = completion_data(job, now, base_url)
    if job["api_version"] == 2:
        return dumps({"type": f"job.{job['status']}", "timestamp": v2_time(now), "data": data})
    return dumps(data)


def lot_event_body(job_id: uuid.UUID, lot: Any, now: datetime) -> bytes:
    data = {"job_id": str(job_id), "lot_seq": lot["lot_seq"], **lot_entry(lot)}
    kind = "lot.completed" if lot["status"] == "completed" else "lot.failed"
    return dumps({"type": kind, "timestamp": v2_time(now), "data": data})
