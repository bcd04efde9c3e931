"""The v1 ``X-Signature`` header check (contract Decision 2, §2.2).

Accepted: hex HMAC-SHA256 (shared key) of the raw request body when it is non-empty, and, unless
the legacy forms are switched off, of the job id from the path or of the empty string. Each with or
without ``sha256=`` and in either case (gen_common.signing.matches_hex). Anything else is 401.
"""

from __future__ import annotations

from dataclasses import dataclass

from gen_common.signing import hmac_hex, matches_hex

HEADER = "x-signature"


@dataclass(frozen=True, slots=True)
class HeaderVerifier:
    key: bytes
    legacy_forms: bool
    empty_hex: str

    @classmethod
    def build(cls, key: bytes, *, legacy_forms: bool) -> HeaderVerifier:
        return cls(key=key, legacy_forms=legacy_forms, empty_hex=hmac_hex(key, b""))

    def verify(self, presented: str | None, *, body: bytes, job_id: str | None) -> bool:
        if not presented:
            return False
        if body and matches_hex(hmac_hex(self.key, body), presented):
            return True
        if not self.legacy_forms:
            return False
        if matches_hex(self.empty_hex, presented):
            return True
        return job_id is not None and matches_hex(
            hmac_hex(self.key, job_id.encode("utf-8", "replace")), presented
        )
