"""A small synchronous client of the Generation Service (v1 wire contract and signed v2 API).

One base URL (the proxy) serves every route; ``ingest_url``, ``status_url`` and ``notifier_url``
override it per service when the services run without the proxy.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

import httpx

from gen_client.errors import ApiError, body_of, checked
from gen_client.lots import v2_lot
from gen_client.signing import canonical_json, hmac_hex, sign_lots, v2_headers

DEV_BASE_URL = "http://127.0.0.1:8080"
DEV_SHARED_KEY = "dev-secret-key-for-testing-2024"
VERSION = "1.0.0"
JSON = {"Content-Type": "application/json"}


class Client:
    def __init__(
        self,
        base_url: str = DEV_BASE_URL,
        *,
        shared_key: str = DEV_SHARED_KEY,
        client_id: str | None = None,
        key_id: str | None = None,
        secret: bytes | None = None,
        ingest_url: str | None = None,
        status_url: str | None = None,
        notifier_url: str | None = None,
        timeout: float = 330.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.key = shared_key.encode()
        self.v2 = (client_id, key_id, secret) if client_id and key_id and secret else None
        base = base_url.rstrip("/")
        self.ingest_url = (ingest_url or base).rstrip("/")
        self.status_url = (status_url or base).rstrip("/")
        self.notifier_url = (notifier_url or base).rstrip("/")
        self.http = httpx.Client(timeout=timeout, transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def url_for(self, method: str, path: str) -> str:
        """The full URL of a route: which service answers it, as the proxy routes it."""
        ingest = path in ("/api/v1/generate-descriptions", "/api/v1/test-image-validation") or (
            method.upper() == "POST" and path.split("?")[0] == "/api/v2/jobs"
        )
        if ingest:
            return self.ingest_url + path
        if path.startswith("/api/v1/webhook-"):
            return self.notifier_url + path
        return self.status_url + path

    # --- v1 -----------------------------------------------------------------------------------
    def generate_body(
        self, lots: Sequence[dict[str, Any]], languages: Sequence[str], webhook_url: str | None
    ) -> dict[str, Any]:
        """A signed generate-descriptions request body (contract §1.1, §2.1)."""
        body: dict[str, Any] = {
            "signature": sign_lots(self.key, list(lots)),
            "version": VERSION,
            "languages": list(languages),
            "lots": list(lots),
        }
        if webhook_url:
            body["webhook_url"] = webhook_url
        return body

    def _generate(
        self, lots: Sequence[dict[str, Any]], languages: Sequence[str], webhook_url: str | None
    ) -> dict[str, Any]:
        payload = json.dumps(self.generate_body(lots, languages, webhook_url)).encode()
        url = f"{self.ingest_url}/api/v1/generate-descriptions"
        return checked(self.http.post(url, content=payload, headers=JSON))

    def submit_sync(self, lot: dict[str, Any], languages: Sequence[str]) -> dict[str, Any]:
        """One lot, answered inline: the 200 body (``lots[0].descriptions``, ...)."""
        return self._generate([lot], languages, None)

    def submit_batch(
        self,
        lots: Sequence[dict[str, Any]],
        languages: Sequence[str],
        *,
        webhook_url: str | None = None,
    ) -> str:
        """Two or more lots: the job id of the accepted (201) job."""
        if len(lots) < 2:
            raise ValueError("a v1 batch needs at least two lots (one lot is answered inline)")
        return str(self._generate(lots, languages, webhook_url)["job_id"])

    def _header_signed(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """Routes with ``X-Signature`` = HMAC over the exact (non-empty) body (Decision 2)."""
        raw = canonical_json(body)
        headers = {**JSON, "X-Signature": hmac_hex(self.key, raw)}
        return checked(
            self.http.request(method, self.status_url + path, content=raw, headers=headers)
        )

    def batch_status(self, job_id: str) -> dict[str, Any]:
        return checked(self.http.get(f"{self.status_url}/api/v1/batch-status/{job_id}"))

    def job(self, job_id: str) -> dict[str, Any]:
        """``/jobs/{id}``: status, counters and the finished lots."""
        return checked(self.http.get(f"{self.status_url}/api/v1/jobs/{job_id}"))

    def batch_results(self, job_id: str) -> dict[str, Any]:
        """Raises :class:`NotCompleted` until the job completed."""
        return self._header_signed("GET", f"/api/v1/batch-results/{job_id}", {"job_id": job_id})

    def download(self, job_id: str, *, format: str = "json") -> bytes:
        """The results file: the original's JSON, or JSON Lines (one lot per line)."""
        query = "?format=jsonl" if format == "jsonl" else ""
        raw = canonical_json({"job_id": job_id})
        url = f"{self.status_url}/api/v1/batch-results/{job_id}/download{query}"
        headers = {**JSON, "X-Signature": hmac_hex(self.key, raw)}
        response = self.http.request("GET", url, content=raw, headers=headers)
        if response.status_code != 200:
            checked(response)
            raise ApiError(response.status_code, body_of(response))
        return response.content

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._header_signed(
            "POST", f"/api/v1/batch-jobs/{job_id}/cancel", {"job_id": job_id}
        )

    def list_jobs(
        self, *, status: str | None = None, limit: int = 10, offset: int = 0
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if status:
            params["status"] = status
        return self._header_signed("GET", "/api/v1/batch-jobs?" + urlencode(params), {})

    # --- v2 -----------------------------------------------------------------------------------
    def _v2(self, method: str, base: str, path: str, query: str = "", body: bytes = b"") -> Any:
        if self.v2 is None:
            raise ValueError("v2 requests need client_id, key_id and secret")
        client_id, key_id, secret = self.v2
        headers = v2_headers(
            secret,
            client_id=client_id,
            key_id=key_id,
            method=method,
            path=path,
            query=query,
            body=body,
        )
        if body:
            headers.update(JSON)
        url = base + path + (f"?{query}" if query else "")
        return checked(self.http.request(method, url, content=body, headers=headers))

    def create_job(
        self,
        lots: Sequence[dict[str, Any]],
        languages: Sequence[str],
        *,
        webhook_url: str | None = None,
    ) -> dict[str, Any]:
        """``POST /api/v2/jobs``: the job resource (any number of lots, always a job)."""
        job: dict[str, Any] = {"lots": [v2_lot(lot) for lot in lots], "languages": list(languages)}
        if webhook_url:
            job["webhook_url"] = webhook_url
        return dict(
            self._v2("POST", self.ingest_url, "/api/v2/jobs", body=json.dumps(job).encode())
        )

    def job_v2(self, job_id: str) -> dict[str, Any]:
        """State, counters, ``usage`` (tokens and ``cost_usd``) of one of this client's jobs."""
        return dict(self._v2("GET", self.status_url, f"/api/v2/jobs/{job_id}"))

    def lots_v2(self, job_id: str, *, cursor: str | None = None, limit: int | None = None) -> Any:
        params = {k: v for k, v in (("cursor", cursor), ("limit", limit)) if v is not None}
        return self._v2("GET", self.status_url, f"/api/v2/jobs/{job_id}/lots", urlencode(params))

    def iter_lots_v2(self, job_id: str, *, page: int = 500) -> Iterator[dict[str, Any]]:
        cursor: str | None = None
        while True:
            answer = self.lots_v2(job_id, cursor=cursor, limit=page)
            yield from answer["lots"]
            cursor = answer["next_cursor"]
            if cursor is None:
                return

    # --- webhook replay (notifier) ------------------------------------------------------------
    def replay(self, delivery_id: str) -> dict[str, Any]:
        url = f"{self.notifier_url}/api/v1/webhook-deliveries/{delivery_id}/replay"
        return checked(self.http.post(url))

    def replay_since(self, since: str) -> dict[str, Any]:
        url = f"{self.notifier_url}/api/v1/webhook-deliveries/replay"
        return checked(self.http.post(url, params={"since": since}))
