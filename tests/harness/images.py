"""A real image host on 127.0.0.1 (threaded HTTP/1.1 server), independent of any event loop.

Paths: ``/ok/<name>.jpg`` answers ``image/jpeg``; ``/broken/<name>.jpg`` also serves an image here,
but the OpenAI simulator refuses to "download" any URL containing ``/broken/`` (its convention),
so the model call fails for it; ``/missing/...`` and anything else answer 404. HEAD and GET
(ranged or not) are served; every request is counted per path.
"""

from __future__ import annotations

import collections
import threading
from http.server import BaseHTTPRequestHandler

from tests.harness.loopback_server import LoopbackServer, QuietHandler

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 2000 + b"\xff\xd9"


class ImageHost(LoopbackServer):
    def __init__(self, host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self.hits: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def ok(self, name: str) -> str:
        return f"{self.base}/ok/{name}.jpg"

    def missing(self, name: str) -> str:
        return f"{self.base}/missing/{name}.jpg"

    def broken(self, name: str) -> str:
        return f"{self.base}/broken/{name}.jpg"

    def handler(self) -> type[BaseHTTPRequestHandler]:
        host = self

        class Handler(QuietHandler):
            def _answer(self, with_body: bool) -> None:
                path = self.path.split("?", 1)[0]
                with host._lock:
                    host.hits[path] += 1
                servable = path.startswith(("/ok/", "/broken/")) and path.endswith(".jpg")
                status, body, ctype = (
                    (200, JPEG, "image/jpeg") if servable else (404, b"nope", "text/plain")
                )
                self.send_response(status)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                if with_body:
                    self.wfile.write(body)

            def do_GET(self) -> None:
                self._answer(True)

            def do_HEAD(self) -> None:
                self._answer(False)

        return Handler
