"""A real webhook receiver on 127.0.0.1 (a threaded HTTP/1.1 server) that verifies every delivery.

Every request is recorded as a :class:`Received` with the outcome of each signature form, checked
against every key the receiver knows:

- ``x_signature``: ``X-Signature`` == hex HMAC-SHA256 over the raw body bytes;
- ``body_signature``: for W2 bodies, ``signature`` == HMAC over ``lots`` (contract §2.1
  normalisation); ``None`` for bodies without ``lots``;
- ``standard``: the Standard Webhooks headers, verified with the ``standardwebhooks`` library
  (any exception it raises on malformed input counts as a failed verification).

``respond`` decides the answer per request (status, headers, body, delay), e.g.
``fail_first(3)``; ``hold`` (a threading.Event) delays every answer until set, and ``arrived``
is set when a request arrives, so a test can act between receipt and answer. ``stop()`` and
``start()`` take the receiver down and bring it back on the same port. ``tls`` (a server
context) makes it an https receiver.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, Self

from gen_common.signing import sign_lots, webhook_secret_bytes
from standardwebhooks.webhooks import Webhook

from tests.harness.loopback_server import LoopbackServer, QuietHandler


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b'{"ok":true}'
    delay_s: float = 0.0


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    x_signature: bool
    body_signature: bool | None
    standard: bool
    answered: int = 0

    @property
    def msg_id(self) -> str:
        return self.headers.get("webhook-id", "")

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def verified(self) -> bool:
        return self.x_signature and self.standard and self.body_signature is not False


Respond = Callable[[int, "Received"], Reply]


def always(status: int = 200, **kw: Any) -> Respond:
    return lambda _n, _r: Reply(status, **kw)


def fail_first(n: int, status: int = 500) -> Respond:
    """Answer ``status`` to the first ``n`` requests carrying a given webhook-id, then 200."""
    seen: dict[str, int] = {}
    lock = threading.Lock()

    def respond(_n: int, r: Received) -> Reply:
        with lock:
            seen[r.msg_id] = seen.get(r.msg_id, 0) + 1
            count = seen[r.msg_id]
        return Reply(status) if count <= n else Reply(200)

    return respond


def check(
    keys: Sequence[str], headers: dict[str, str], body: bytes
) -> tuple[bool, bool | None, bool]:
    """(x_signature, body_signature, standard) against any of ``keys``."""
    x_sig = any(
        hmac.compare_digest(
            headers.get("x-signature", ""),
            hmac.new(webhook_secret_bytes(k), body, hashlib.sha256).hexdigest(),
        )
        for k in keys
    )
    body_sig: bool | None = None
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and "lots" in parsed:
        body_sig = any(
            hmac.compare_digest(
                str(parsed.get("signature", "")), sign_lots(webhook_secret_bytes(k), parsed["lots"])
            )
            for k in keys
        )
    standard = False
    for k in keys:
        try:
            Webhook(webhook_secret_bytes(k)).verify(body, headers, json_parse=False)
            standard = True
        except Exception:  # noqa: S112 - the library raises several types on bad input
            continue
    return x_sig, body_sig, standard


class Receiver(LoopbackServer):
    def __init__(
        self,
        keys: Sequence[str],
        respond: Respond | None = None,
        port: int = 0,
        host: str = "127.0.0.1",
        tls: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(host, port, tls)
        self.keys = list(keys)
        self.respond: Respond = respond or always(200)
        self.received: list[Received] = []
        self.hold = threading.Event()
        self.hold.set()
        self.arrived = threading.Event()
        self._lock = threading.Lock()
        self._conns: set[Any] = set()
        self.down = False
        self.path = f"/hook/{uuid.uuid4().hex[:12]}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def hook(self, path: str | None = None) -> str:
        """A webhook URL on this receiver; by default unique to this receiver instance (endpoint
        rows are keyed by URL and outlive a test, so a reused port must not inherit state)."""
        return f"{self.url}{path or self.path}"

    def start(self) -> Self:
        self.down = False
        return super().start()

    def handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(QuietHandler):
            def setup(self) -> None:
                super().setup()
                with receiver._lock:
                    receiver._conns.add(self.connection)

            def finish(self) -> None:
                with receiver._lock:
                    receiver._conns.discard(self.connection)
                super().finish()

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                x_sig, body_sig, standard = check(receiver.keys, headers, body)
                rec = Received(self.path, headers, body, time.time(), x_sig, body_sig, standard)
                with receiver._lock:
                    receiver.received.append(rec)
                    n = len(receiver.received)
                receiver.arrived.set()
                reply = receiver.respond(n, rec)
                receiver.hold.wait(60)
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                if receiver.down:
                    self.close_connection = True
                    return
                rec.answered = reply.status
                try:
                    self.send_response(reply.status)
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except OSError:
                    self.close_connection = True

        return Handler

    def stop(self) -> None:
        """Go down: stop listening and cut every open (keep-alive) connection."""
        self.down = True
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        super().stop()

    def __exit__(self, *_: object) -> None:
        self.hold.set()
        self.stop()

    def by_msg(self, msg_id: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.msg_id == msg_id]

    def msg_ids(self) -> set[str]:
        with self._lock:
            return {r.msg_id for r in self.received}

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.received)
