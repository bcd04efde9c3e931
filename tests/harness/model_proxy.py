"""An HTTP proxy in front of the OpenAI simulator that spoils model answers on request (O4).

The simulator always answers a ``json_schema`` request with a valid instance; real models do not.
``with ModelProxy(sim.base_url) as proxy:`` forwards everything to the simulator (``proxy.base_url``
is what a service's ``OPENAI__BASE_URL`` points at) and rewrites the answer of a
``POST /v1/responses`` whose request body contains one of these markers (e.g. in a lot's
``additional_info``):

- ``[[invalid-json]]`` — the answer's text is cut in half (not JSON);
- ``[[missing-fields]]`` — the answer's JSON loses its first field (valid JSON, wrong shape);
- ``[[broken-body]]`` — the HTTP body itself is cut (a 200 that is not JSON).

The simulator's own refusal marker (``[[refuse]]``) passes through untouched: the simulator answers
it with a ``refusal`` part. ``rewritten`` counts the rewrites per marker. A threaded server,
independent of any event loop (like tests.harness.images).
"""

from __future__ import annotations

import collections
import http.client
import json
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from tests.harness.loopback_server import LoopbackServer, QuietHandler

INVALID_JSON = "[[invalid-json]]"
MISSING_FIELDS = "[[missing-fields]]"
BROKEN_BODY = "[[broken-body]]"
MARKERS = (INVALID_JSON, MISSING_FIELDS, BROKEN_BODY)
_HOP = {
    "host",
    "content-length",
    "connection",
    "transfer-encoding",
    "accept-encoding",
    "keep-alive",
}


def spoil(marker: str, body: dict[str, Any]) -> bytes:
    """The answer as the proxy sends it back for ``marker``."""
    if marker == BROKEN_BODY:
        return json.dumps(body).encode()[:40]
    for item in body.get("output") or []:
        for part in item.get("content") or []:
            if part.get("type") != "output_text":
                continue
            text = str(part.get("text", ""))
            if marker == INVALID_JSON:
                part["text"] = text[: len(text) // 2]
            else:
                value = json.loads(text)
                value.pop(next(iter(value)), None)
                part["text"] = json.dumps(value)
    return json.dumps(body).encode()


class ModelProxy(LoopbackServer):
    def __init__(self, upstream_base_url: str, host: str = "127.0.0.1") -> None:
        super().__init__(host)
        parts = urlsplit(upstream_base_url)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.prefix = parts.path.rstrip("/")  # "/v1"
        self.rewritten: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}{self.prefix}"

    def handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(QuietHandler):
            def _forward(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                upstream = http.client.HTTPConnection(*proxy.upstream, timeout=600)
                try:
                    upstream.request(self.command, self.path, body=body or None, headers=headers)
                    answer = upstream.getresponse()
                    content = answer.read()
                    status, reply_headers = answer.status, answer.getheaders()
                finally:
                    upstream.close()
                marker = next((m for m in MARKERS if m.encode() in body), None)
                if marker and self.path.endswith("/responses") and status == 200:
                    content = spoil(marker, json.loads(content))
                    with proxy._lock:
                        proxy.rewritten[marker] += 1
                self.send_response(status)
                for name, value in reply_headers:
                    if name.lower() not in _HOP | {"content-encoding", "date", "server"}:
                        self.send_header(name, value)
                self.send_header("content-length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_DELETE = _forward

        return Handler
