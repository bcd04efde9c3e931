"""The whole system as real processes, for end-to-end tests (one instance per test module).

``async with open_system(db_url=..., bootstrap=..., root=tmp) as system:`` starts, on 127.0.0.1:

- the OpenAI simulator (``openai_sim.process.running``; admin at ``system.sim.admin``);
- an image host (tests.harness.images: ``/ok/*.jpg``, ``/missing/*`` 404, ``/broken/*`` which
  the simulator refuses to download);
- the webhook receiver (tests.harness.receiver, verifying every signature form);
- ``python -m gen_ingest``, ``gen_status``, ``gen_vision``, ``gen_translate`` and
  ``gen_notifier`` as children (tests.harness.processes), configured only through the
  environment: one Kafka topic prefix per system, one shared v1 key for ingest, status and the
  notifier (so the receiver verifies with the key the client holds), the SSRF allowlist
  127.0.0.0/8 for images and webhooks, free ports, and short polls, leases and retry delays.

Readiness: ``GET /health`` on ingest, status and the notifier, ``/metrics`` on vision, and the
Kafka consumer groups of vision, translate and the notifier ``Stable`` with a member. Logs go
to ``<root>/<service>.log``; :meth:`System.tails` gives the end of each for failure reports.
``kill``/``stop``/``start``/``restart`` act on one service process.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from gen_common import kafka
from gen_common.settings import KafkaSettings
from gen_common.signing import hmac_hex, sign_lots
from openai_sim.process import RunningSim, free_port, running

from tests.harness.images import ImageHost
from tests.harness.processes import Child, settings_env
from tests.harness.receiver import Receiver

SERVICES = ("ingest", "status", "vision", "translate", "notifier")
CONSUMERS = ("vision", "translate", "notifier")
SHARED_KEY = "e2e-shared-key-0123456789"
SIM_KEY = "sk-e2e"
START_ORDER = ("notifier", "translate", "vision", "status", "ingest")


class V1Client:
    """The original service's v1 client: body-signed submissions, X-Signature on reads."""

    def __init__(self, http: httpx.AsyncClient, *, key: str, ingest: str, status: str) -> None:
        self.http = http
        self.key = key.encode()
        self.ingest = ingest
        self.status = status

    def body(self, lots: list[dict[str, Any]], languages: list[str], **extra: Any) -> bytes:
        payload = {
            "signature": sign_lots(self.key, lots),
            "version": "1.0.0",
            "languages": languages,
            "lots": lots,
            **extra,
        }
        return json.dumps(payload).encode()

    async def generate(
        self, lots: list[dict[str, Any]], languages: list[str], **extra: Any
    ) -> httpx.Response:
        return await self.post_raw(self.body(lots, languages, **extra))

    async def post_raw(
        self, body: bytes, content_type: str = "application/json", **headers: str
    ) -> httpx.Response:
        return await self.http.post(
            f"{self.ingest}/api/v1/generate-descriptions",
            content=body,
            headers={"content-type": content_type, **headers},
        )

    def x_signature(self, message: bytes) -> str:
        return hmac_hex(self.key, message)

    async def get(self, path: str, *, sign: str | None = None, **params: Any) -> httpx.Response:
        """GET a status route; ``sign`` is the message of X-Signature (a job id, or "")."""
        headers = {} if sign is None else {"x-signature": self.x_signature(sign.encode())}
        return await self.http.get(f"{self.status}{path}", headers=headers, params=params)

    async def batch_status(self, job_id: str) -> httpx.Response:
        return await self.get(f"/api/v1/batch-status/{job_id}")

    async def batch_results(self, job_id: str) -> httpx.Response:
        return await self.get(f"/api/v1/batch-results/{job_id}", sign=job_id)

    async def cancel(self, job_id: str) -> httpx.Response:
        body = json.dumps({"job_id": job_id}).encode()
        return await self.http.post(
            f"{self.status}/api/v1/batch-jobs/{job_id}/cancel",
            content=body,
            headers={"content-type": "application/json", "x-signature": self.x_signature(body)},
        )


@dataclass
class System:
    root: Path
    db_url: str
    kafka: KafkaSettings
    sim: RunningSim
    images: ImageHost
    receiver: Receiver
    ports: dict[str, int]
    envs: dict[str, dict[str, str]]
    children: dict[str, Child] = field(default_factory=dict)
    shared_key: str = SHARED_KEY

    @property
    def ingest_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['ingest']}"

    @property
    def status_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['status']}"

    @property
    def notifier_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['notifier']}"

    def client(self, http: httpx.AsyncClient) -> V1Client:
        return V1Client(http, key=self.shared_key, ingest=self.ingest_url, status=self.status_url)

    def v1_lots(
        self, tag: str, total: int, *, hook: str | None = None, images: int = 1
    ) -> list[dict[str, Any]]:
        """``total`` v1 lots ``{tag}-{i}`` with ``images`` servable images each and, with
        ``hook`` (a receiver path), a per-lot webhook."""
        return [
            {
                "lot_id": f"{tag}-{i}",
                "images": [{"url": self.images.ok(f"{tag}-{i}-{k}")} for k in range(images)],
                **({"webhook": self.receiver.hook(hook)} if hook else {}),
            }
            for i in range(total)
        ]

    def log(self, name: str) -> Path:
        return self.root / f"{name}.log"

    # -- processes -------------------------------------------------------------------------

    def start(self, name: str, **env: str) -> Child:
        self.envs[name].update(env)
        child = Child(f"gen_{name}", self.envs[name], self.log(name)).start()
        self.children[name] = child
        return child

    def kill(self, name: str) -> None:
        """SIGKILL one service process (its leases and uncommitted offsets stay behind)."""
        self.children[name].kill()

    def stop(self, name: str) -> int | None:
        return self.children[name].stop()

    async def restart(self, name: str, *, kill: bool = False, **env: str) -> None:
        self.kill(name) if kill else self.stop(name)
        self.start(name, **env)
        await self.wait_ready([name])

    def alive(self) -> dict[str, bool]:
        return {n: c.proc is not None and c.proc.poll() is None for n, c in self.children.items()}

    # -- readiness -------------------------------------------------------------------------

    async def wait_ready(self, names: list[str] | tuple[str, ...], timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2) as http:
            for name in names:
                while not await self._ready(http, name):
                    child = self.children[name]
                    if child.proc is not None and child.proc.poll() is not None:
                        raise RuntimeError(
                            f"{name} exited ({child.proc.returncode})\n{self.tails()}"
                        )
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{name} not ready in {timeout}s\n{self.tails()}")
                    await asyncio.sleep(0.1)

    async def _ready(self, http: httpx.AsyncClient, name: str) -> bool:
        if name in ("ingest", "status", "notifier"):
            port = self.ports[name]
            try:
                response = await http.get(f"http://127.0.0.1:{port}/health")
            except httpx.HTTPError:
                return False
            if response.status_code != 200:
                return False
        if name == "vision":
            try:
                response = await http.get(f"http://127.0.0.1:{self.ports['vision']}/metrics")
            except httpx.HTTPError:
                return False
        if name in CONSUMERS:
            return await self._group_stable(name)
        return True

    async def _group_stable(self, group: str) -> bool:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.kafka.bootstrap_servers)
        await admin.start()
        try:
            answers = await admin.describe_consumer_groups([self.kafka.topic(group)])
        except KafkaError:  # e.g. a new cluster still creating __consumer_offsets
            return False
        finally:
            await admin.close()
        groups = answers[0].to_object()["groups"]
        return bool(groups) and groups[0]["state"] == "Stable" and bool(groups[0]["members"])

    # -- diagnostics -----------------------------------------------------------------------

    def tails(self, lines: int = 30) -> str:
        out = []
        for name in SERVICES:
            path = self.log(name)
            text = path.read_text(errors="replace").splitlines() if path.exists() else []
            out.append(f"----- {name} ({path}) last {lines} lines -----")
            out.extend(line[:600] for line in text[-lines:])
        return "\n".join(out)

    def log_lines(self, name: str) -> list[dict[str, Any]]:
        """The JSON lines of one service's log (non-JSON lines as ``{"raw": line}``)."""
        path = self.log(name)
        found: list[dict[str, Any]] = []
        for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
            try:
                value = json.loads(line)
            except ValueError:
                value = {"raw": line}
            found.append(value if isinstance(value, dict) else {"raw": line})
        return found


def announce(what: str, figures: Mapping[str, Any]) -> None:
    """Show measured figures on the terminal, past pytest's capture (like tests.harness.infra)."""
    line = f"\n[e2e] {what} {json.dumps(figures, default=str)}\n"
    sys.__stderr__.write(line) if sys.__stderr__ else None


def service_envs(
    *,
    db_url: str,
    ks: KafkaSettings,
    sim: RunningSim,
    ports: Mapping[str, int],
    overrides: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, dict[str, str]]:
    """Each child's settings, as environment variables (the services read nothing else)."""
    common = {
        "DB__URL": db_url,
        "KAFKA__BOOTSTRAP_SERVERS": ks.bootstrap_servers,
        "KAFKA__TOPIC_PREFIX": ks.topic_prefix,
        "KAFKA__PARTITIONS": str(ks.partitions),
        "KAFKA__REPLICATION_FACTOR": str(ks.replication_factor),
        "KAFKA__MIN_INSYNC_REPLICAS": str(ks.min_insync_replicas),
        "KAFKA__SESSION_TIMEOUT_MS": "6000",
        "LOG__LEVEL": "INFO",
    }
    openai = {
        "OPENAI__BASE_URL": sim.base_url,
        "OPENAI__API_KEY": SIM_KEY,
        "OPENAI__TIMEOUT_S": "30",
        "OPENAI__MAX_RETRIES": "0",
    }
    loopback = json.dumps(["127.0.0.0/8"])
    envs = {
        "ingest": {
            "INGEST__PORT": str(ports["ingest"]),
            "INGEST__SHARED_KEY": SHARED_KEY,
            "INGEST__SYNC_BUDGET_S": "60",
            "INGEST__DUPLICATE_WINDOW_S": "0",
            "INGEST__V1_RATE_PER_S": "1000",
            "INGEST__V1_RATE_BURST": "2000",
        },
        "status": {"STATUS__PORT": str(ports["status"]), "STATUS__SHARED_KEY": SHARED_KEY},
        "vision": {
            **openai,
            "VISION__WORKERS": "16",
            "VISION__IDLE_POLL_S": "0.2",
            "VISION__LEASE_S": "10",
            "VISION__REAP_INTERVAL_S": "1",
            "VISION__RETRY_BASE_S": "0.2",
            "VISION__RETRY_MAX_S": "2",
            "VISION__METRICS_PORT": str(ports["vision"]),
            # 10 s/15 s instead of 3 s/5 s: on a loaded 2-core CI box, the Batch API path's
            # image checks of 1,000 lots at once sometimes exceeded 3 s (lots failed
            # image_unreachable although the image host served every request).
            "VISION__IMAGES": json.dumps(
                {
                    "ssrf": {"allow_cidrs": ["127.0.0.0/8"]},
                    "head_timeout_s": 10,
                    "get_timeout_s": 15,
                }
            ),
        },
        "translate": {
            **openai,
            "TRANSLATE__WORKERS": "16",
            "TRANSLATE__IDLE_POLL_S": "0.2",
            "TRANSLATE__LEASE_S": "40",
            "TRANSLATE__REAP_INTERVAL_S": "1",
            "TRANSLATE__RETRY_BASE_S": "0.2",
            "TRANSLATE__RETRY_MAX_S": "2",
        },
        "notifier": {
            "NOTIFIER__HTTP_PORT": str(ports["notifier"]),
            "NOTIFIER__SHARED_KEY": SHARED_KEY,
            "NOTIFIER__SSRF__ALLOW_CIDRS": loopback,
            "NOTIFIER__IDLE_POLL_S": "0.2",
            "NOTIFIER__REAP_INTERVAL_S": "1",
            "NOTIFIER__LEASE_S": "20",
            "NOTIFIER__TIMEOUT_S": "10",
            "NOTIFIER__SCHEDULE_S": json.dumps([0.5, 1, 2, 5, 10]),
            "NOTIFIER__OVERLOAD_MIN_S": "1",
        },
    }
    for name, extra in (overrides or {}).items():
        envs[name].update(extra)
    return {name: settings_env(**common, **env) for name, env in envs.items()}


@asynccontextmanager
async def open_system(
    *,
    db_url: str,
    bootstrap: str,
    root: Path,
    sim_config: dict[str, Any] | None = None,
    overrides: Mapping[str, Mapping[str, str]] | None = None,
    partitions: int = 3,
    replication: int = 1,
) -> AsyncIterator[System]:
    """Start everything, wait until every service is ready, stop it all on exit. With
    ``replication`` > 1 (a multi-node cluster) topics get that many replicas and
    ``min.insync.replicas`` 2."""
    root.mkdir(parents=True, exist_ok=True)
    ks = KafkaSettings(
        bootstrap_servers=bootstrap,
        topic_prefix=f"e2e{uuid.uuid4().hex[:8]}.",
        partitions=partitions,
        replication_factor=replication,
        min_insync_replicas=min(replication, 2),
    )
    await kafka.ensure_topics(ks)
    config = {"call_log_size": 200_000, **(sim_config or {})}
    async with AsyncExitStack() as stack:
        sim = stack.enter_context(running(config))
        images = stack.enter_context(ImageHost())
        receiver = stack.enter_context(Receiver([SHARED_KEY]))
        ports: dict[str, int] = {}
        for name in ("ingest", "status", "vision", "notifier"):
            while (port := free_port()) in ports.values():  # the kernel may hand one out twice
                pass
            ports[name] = port
        envs = service_envs(db_url=db_url, ks=ks, sim=sim, ports=ports, overrides=overrides)
        system = System(root, db_url, ks, sim, images, receiver, ports, envs)

        def stop_all() -> None:
            for child in reversed(list(system.children.values())):
                child.stop()

        stack.callback(stop_all)
        for name in START_ORDER:
            system.start(name)
        await system.wait_ready(START_ORDER)
        yield system
