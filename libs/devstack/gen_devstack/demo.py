"""``make demo``: a sync lot and a batch job with a webhook, against the stack ``make up`` runs.

It serves its own demo images and webhook receiver on loopback (the simulated stack allows
127.0.0.0/8 for them), so the whole round trip stays on this machine.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

from gen_client.client import Client

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\x00" * 64
BASE_URL = "http://127.0.0.1:8080"


class _Demo(BaseHTTPRequestHandler):
    webhooks: ClassVar[list[dict[str, Any]]] = []

    def do_HEAD(self) -> None:
        self._image(body=False)

    def do_GET(self) -> None:
        self._image(body=True)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        self.webhooks.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _image(self, *, body: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(JPEG)))
        self.end_headers()
        if body:
            self.wfile.write(JPEG)

    def log_message(self, format: str, *args: Any) -> None:
        return


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main() -> int:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Demo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    here = f"http://127.0.0.1:{server.server_address[1]}"
    lot = {
        "lot_id": "demo-1",
        "additional_info": "2019 sedan, rear bumper scratched",
        "images": [{"url": f"{here}/car/{i}.jpg"} for i in range(3)],
    }
    with Client(BASE_URL) as client:
        started = time.monotonic()
        answer = client.submit_sync(lot, ["en", "ru", "de"])
        _say(f"sync answer in {time.monotonic() - started:.2f}s:")
        _say(json.dumps(answer, indent=2, ensure_ascii=False))
        lots = [dict(lot, lot_id=f"demo-batch-{i}", webhook=f"{here}/hook") for i in range(3)]
        job_id = client.submit_batch(lots, ["en", "ru"], webhook_url=f"{here}/hook")
        _say(f"batch job {job_id} accepted; waiting for it and its webhooks ...")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            status = client.batch_status(job_id)
            if status["status"] in ("completed", "failed", "cancelled") and _Demo.webhooks:
                break
            time.sleep(0.5)
        _say(json.dumps(client.batch_status(job_id), indent=2))
    server.shutdown()
    _say(f"webhooks received: {len(_Demo.webhooks)}")
    for payload in _Demo.webhooks:
        _say("  " + json.dumps(payload)[:160])
    problems = _problems(answer, status["status"], len(_Demo.webhooks))
    for problem in problems:
        _say(f"FAILED: {problem}")
    return 1 if problems else 0


def _problems(answer: dict[str, Any], job_status: str, webhooks: int) -> list[str]:
    """What the demo expected and did not see (``make smoke`` fails on any of them)."""
    problems = []
    descriptions = answer.get("lots", [{}])[0].get("descriptions", [])
    if [d.get("language") for d in descriptions] != ["en", "ru", "de"]:
        problems.append(f"sync answer lacks en, ru, de descriptions: {descriptions!r:.200}")
    if not os.environ.get("OPENAI_API_KEY") and not all(d.get("simulated") for d in descriptions):
        problems.append("the simulated stack answered without marking descriptions simulated")
    if job_status != "completed":
        problems.append(f"batch job ended {job_status!r}, not 'completed'")
    if not webhooks:
        problems.append("no webhook received")
    return problems


if __name__ == "__main__":
    sys.exit(main())
