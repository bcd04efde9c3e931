"""A real ``python -m gen_vision`` for process-level tests (SIGKILL, O1/O2 storms).

- :func:`vision_env` — the child's environment: wired to the test's PostgreSQL / Kafka prefix and
  to a simulator, loopback images allowed, short polls.
- :func:`breaker_gauges` — its Prometheus ``/metrics`` (``VISION__METRICS_PORT``) as a dict.
- :func:`transitions` — the breaker's state changes, read from its JSON log.
- :func:`job_calls` / :func:`per_second` — the simulator's call log of one job, bucketed.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from gen_common.settings import KafkaSettings
from openai_sim.process import RunningSim

from tests.harness.processes import settings_env

BREAKER_LOG = "circuit breaker state change"


def vision_env(db_url: str, ks: KafkaSettings, sim: RunningSim, **overrides: str) -> dict[str, str]:
    values = {
        "DB__URL": db_url,
        "KAFKA__BOOTSTRAP_SERVERS": ks.bootstrap_servers,
        "KAFKA__TOPIC_PREFIX": ks.topic_prefix,
        "KAFKA__PARTITIONS": str(ks.partitions),
        "OPENAI__BASE_URL": sim.base_url,
        "OPENAI__API_KEY": "sk-test",
        "OPENAI__MAX_RETRIES": "0",
        "VISION__IDLE_POLL_S": "0.2",
        "VISION__REAP_INTERVAL_S": "0.5",
        "VISION__IMAGES": '{"ssrf": {"allow_cidrs": ["127.0.0.0/8"]}}',
        "LOG__LEVEL": "WARNING",
    }
    values.update(overrides)
    return settings_env(**values)


async def breaker_gauges(http: httpx.AsyncClient, port: int) -> dict[str, float]:
    """``gen_breaker_{state,trips_total,rejected_total}{stage="vision"}`` as ``state``,
    ``trips``, ``rejected`` (state: 0 closed, 1 half-open, 2 open), read at scrape time."""
    response = await http.get(f"http://127.0.0.1:{port}/metrics")
    response.raise_for_status()
    gauges: dict[str, float] = {}
    for line in response.text.splitlines():
        name, _, value = line.partition(" ")
        family, _, labels = name.partition("{")
        if family.startswith("gen_breaker_") and 'stage="vision"' in labels:
            key = family.removeprefix("gen_breaker_").removesuffix("_total")
            gauges[key] = float(value)
    if set(gauges) != {"state", "trips", "rejected"}:
        raise AssertionError(f"no breaker families on /metrics: {response.text[:2000]}")
    return gauges


@dataclass(frozen=True, slots=True)
class Transition:
    at: float  # epoch seconds (the log record's time)
    before: str
    after: str


def transitions(log: Path) -> list[Transition]:
    """The breaker's state changes in the child's JSON log, oldest first."""
    found: list[Transition] = []
    for raw in log.read_bytes().splitlines():
        if not raw.startswith(b"{"):
            continue
        line = orjson.loads(raw)
        if (line.get("msg") or line.get("message")) != BREAKER_LOG:
            continue
        at = datetime.fromisoformat(line["ts"]).timestamp()
        found.append(Transition(at, str(line["from"]), str(line["to"])))
    return found


def job_calls(sim: RunningSim, job: uuid.UUID) -> list[dict[str, Any]]:
    """The simulator's log entries (``/v1/responses``) of one job; ``time`` is when it arrived."""
    return [c for c in sim.admin.calls() if (c["metadata"] or {}).get("job_id") == str(job)]


def per_second(calls: list[dict[str, Any]], start: float, end: float) -> list[int]:
    """Calls that arrived in each whole second of [start, end)."""
    counts = Counter(int(c["time"] - start) for c in calls if start <= c["time"] < end)
    return [counts.get(i, 0) for i in range(int(end - start))]
