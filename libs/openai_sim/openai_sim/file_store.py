"""The in-memory Files store (openai-reference §4.1)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from openai_sim.clock import SimClock
from openai_sim.errors import not_found

DEFAULT_BATCH_EXPIRY_S = 30 * 86_400


@dataclass(slots=True)
class StoredFile:
    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int
    expires_at: int | None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.data),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "expires_at": self.expires_at,
            "status_details": None,
        }


class FileStore:
    def __init__(self, clock: SimClock) -> None:
        self.clock = clock
        self._files: dict[str, StoredFile] = {}

    def add(
        self, *, filename: str, purpose: str, data: bytes, expires_in: int | None = None
    ) -> StoredFile:
        now = int(self.clock.now())
        if expires_in is None and purpose in ("batch", "batch_output"):
            expires_in = DEFAULT_BATCH_EXPIRY_S
        stored = StoredFile(
            id="file-" + secrets.token_hex(12),
            filename=filename,
            purpose=purpose,
            data=data,
            created_at=now,
            expires_at=now + expires_in if expires_in else None,
        )
        self._files[stored.id] = stored
        return stored

    def get(self, file_id: str) -> StoredFile:
        stored = self._files.get(file_id)
        if stored is None or (
            stored.expires_at is not None and stored.expires_at <= self.clock.now()
        ):
            raise not_found(f"No such File object: {file_id}", param="id")
        return stored

    def delete(self, file_id: str) -> None:
        self.get(file_id)
        del self._files[file_id]
