"""A real image host on 127.0.0.1 (threaded HTTP/1.1 server), independent of any event loop.

Paths: ``/ok/<name>.jpg`` answers ``image/jpeg``; ``/broken/<name>.jpg`` also serves an image here,
but the OpenAI simulator refuses to "download" any URL containing ``/broken/`` (its convention),
so the model call fails for it; ``/missing/...`` and anything else answer 404. HEAD and GET
(ranged or not) are served; every request is counted per path.
"""

from __future__ import annotations

import collections
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 2000 + b"\xff\xd9"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client killed mid-request (the fault tests do that) resets its connection: not news.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class ImageHost:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self.hits: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def ok(self, name: str) -> str:
        return f"{self.base}/ok/{name}.jpg"

    def missing(self, name: str) -> str:
        return f"{self.base}/missing/{name}.jpg"

    def broken(self, name: str) -> str:
        return f"{self.base}/broken/{name}.jpg"

    def start(self) -> ImageHost:
        host = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: object) -> None:
                return

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

        server = _Server((self.host, self.port), Handler)
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> ImageHost:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()
