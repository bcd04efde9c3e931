"""Row -> wire bodies: v1 (the original's shapes plus the Decisions' supersets) and v2."""

from __future__ import annotations

from typing import Any

import asyncpg

from gen_status.wire import money, v1_time, v2_time

NO_VISION = "No vision result"


def progress(job: asyncpg.Record) -> dict[str, Any]:
    total = job["total_lots"]
    done = job["completed_lots"] + job["failed_lots"]
    return {
        "total_lots": total,
        "processed_lots": job["completed_lots"],
        "failed_lots": job["failed_lots"],
        "completion_percentage": round(done / total * 100, 2) if total else 0.0,
    }


def batch_status(job: asyncpg.Record, job_id: str) -> dict[str, Any]:
    """Union of both original batch-status handlers (contract §1.2 REC)."""
    return {
        "job_id": job_id,
        "status": job["status"],
        "created_at": v1_time(job["created_at"]),
        "updated_at": v1_time(job["updated_at"]),
        "error": job["error_message"],
        "error_message": job["error_message"],
        "progress": progress(job),
        "languages": list(job["languages"]),
    }


def job_status(job: asyncpg.Record, job_id: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "job_id": job_id,
        "status": job["status"],
        "created_at": v1_time(job["created_at"]),
        "updated_at": v1_time(job["updated_at"]),
    }
    if job["error_message"]:
        body["error"] = job["error_message"]
    return body


def list_item(job: asyncpg.Record) -> dict[str, Any]:
    """One entry of ``/batch-jobs`` (contract §1.6)."""
    return {
        "job_id": str(job["job_id"]),
        "status": job["status"],
        "created_at": v1_time(job["created_at"]),
        "updated_at": v1_time(job["updated_at"]),
        "languages": list(job["languages"]),
        "webhook_url": job["webhook_url"],
        "total_lots": job["total_lots"],
        "processed_lots": job["completed_lots"],
        "failed_lots": job["failed_lots"],
        "error_message": job["error_message"],
        "openai_batch_id": None,
        "progress": progress(job),
    }


def _texts(lot: asyncpg.Record) -> tuple[str | None, dict[str, str], list[dict[str, str]]]:
    # jsonb re-orders object keys; the wire keeps the contract's {language, damages} order.
    descriptions = [
        {"language": d["language"], "damages": d["damages"]} for d in lot["descriptions"] or ()
    ]
    english = None
    translations: dict[str, str] = {}
    for entry in descriptions:
        if english is None and entry["language"].lower() == "en":
            english = entry["damages"]
        else:
            translations[entry["language"]] = entry["damages"]
    return english, translations, descriptions


def result_lot(lot: asyncpg.Record, *, placeholder: bool = False) -> dict[str, Any]:
    """A lot as the original's results carried it, plus ``descriptions[]`` (§1.3/§1.4 REC)."""
    english, translations, descriptions = _texts(lot)
    return {
        "lot_id": lot["lot_id"],
        "status": lot["status"],
        "vision_result": english if english is not None or not placeholder else NO_VISION,
        "translations": translations,
        "error_message": lot["error_message"],
        "missing_images": list(lot["missing_images"]),
        "descriptions": descriptions,
    }


def job_detail(job: asyncpg.Record, job_id: str, lots: list[asyncpg.Record]) -> dict[str, Any]:
    """``/jobs/{id}``: the original's bodies, counters and ``results`` also before completion."""
    body: dict[str, Any] = {
        "job_id": job_id,
        "status": job["status"],
        "total_lots": job["total_lots"],
        "processed_lots": job["completed_lots"],
        "failed_lots": job["failed_lots"],
        "results": [result_lot(lot, placeholder=True) for lot in lots],
    }
    if job["status"] != "completed":
        body["error"] = job["error_message"]
        body["message"] = f"Job is currently {job['status']}"
    return body


def usage(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "input_tokens": row["input_tokens"],
        "cached_tokens": row["cached_tokens"],
        "output_tokens": row["output_tokens"],
        "reasoning_tokens": row["reasoning_tokens"],
        "cost_usd": money(row["cost_usd"]),
    }


def v2_job(job: asyncpg.Record) -> dict[str, Any]:
    return {
        "job_id": str(job["job_id"]),
        "status": job["status"],
        "mode": job["mode"],
        "languages": list(job["languages"]),
        "total_lots": job["total_lots"],
        "completed_lots": job["completed_lots"],
        "failed_lots": job["failed_lots"],
        "pending_lots": job["total_lots"] - job["completed_lots"] - job["failed_lots"],
        "usage": usage(job),
        "error_message": job["error_message"],
        "created_at": v2_time(job["created_at"]),
        "updated_at": v2_time(job["updated_at"]),
        "completed_at": v2_time(job["completed_at"]),
        "cancelled_at": v2_time(job["cancelled_at"]),
    }


def v2_lot(lot: asyncpg.Record) -> dict[str, Any]:
    return {
        "lot_seq": lot["lot_seq"],
        "lot_id": lot["lot_id"],
        "status": lot["status"],
        "descriptions": _texts(lot)[2],
        "missing_images": list(lot["missing_images"]),
        "pending_languages": list(lot["pending_languages"]),
        "warnings": list(lot["warnings"]),
        "error_code": lot["error_code"],
        "error_message": lot["error_message"],
        "usage": usage(lot),
        "created_at": v2_time(lot["created_at"]),
        "updated_at": v2_time(lot["updated_at"]),
        "completed_at": v2_time(lot["completed_at"]),
    }
