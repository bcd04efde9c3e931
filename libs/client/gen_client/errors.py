"""What a failed call raises: :class:`ApiError` (any non-success answer) and
:class:`NotCompleted` (results asked for before the job completed)."""

from __future__ import annotations

from typing import Any

import httpx


class ApiError(Exception):
    """A non-success answer: ``status`` and the parsed ``{"error": ...}`` body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"HTTP {status}: {body.get('error', body)}")
        self.status = status
        self.body = body


class NotCompleted(ApiError):
    """Results asked for before the job completed (202); ``job_status`` says where it is."""

    @property
    def job_status(self) -> str:
        return str(self.body.get("status", "unknown"))


def body_of(response: httpx.Response) -> dict[str, Any]:
    try:
        parsed = response.json()
    except ValueError:
        return {"error": response.text[:500]}
    return parsed if isinstance(parsed, dict) else {"value": parsed}


def checked(response: httpx.Response) -> dict[str, Any]:
    body = body_of(response)
    if response.status_code == 202 and body.get("error") == "Job not completed":
        raise NotCompleted(response.status_code, body)
    if response.status_code >= 300:
        raise ApiError(response.status_code, body)
    return body
