"""R1: per-client GCRA at ingest, on the real ``python -m gen_ingest`` process over HTTP: signed v2
``POST /api/v2/jobs``, limit 50/s with a burst of 100 (``INGEST__RATE_PER_S``,
``INGEST__RATE_BURST``).

1. 300 requests sent within 1 s from one client. They pass the signature check and the limiter
   and are then refused 415 (``text/plain``: no job is created), so a 415 means "let through by
   the limiter" and each costs ingest as little as possible. Ingest records each request's nonce
   with its arrival time (``request_nonces.seen_at``) just before the limiter decides, so the
   test replays the decisions in that order through a reference GCRA: the first 100 decided are
   let through at once, then only what 50/s refills. The let-through total must equal the
   model's +-2 and the running totals never drift apart by more than 3 (requests seen within
   milliseconds of each other may reach the limiter in the other order); every 429 carries
   ``Retry-After`` >= 1.
   On a loaded 2-core box ingest decided only ~60-110 requests/s, at worst too slow to exceed
   50/s + the burst with 300; the client then sends 300 more so that the limiter must refuse.
   Another client is unaffected meanwhile.
2. A second client creating real one-lot jobs (201) at a steady 50/s for 60 s (the catalogue's
   figure, 3,000 jobs): < 1 % answered 429.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import orjson
import pytest
from gen_common import request_auth
from gen_common.settings import KafkaSettings
from openai_sim.process import free_port

from tests.harness.processes import Child, eventually, settings_env
from tests.harness.system import announce

pytestmark = [pytest.mark.pg, pytest.mark.kafka, pytest.mark.e2e, pytest.mark.slow]
RATE, BURST = 50, 100
BURST_REQUESTS, BURST_S, MORE = 300, 1.0, 300
STEADY_S = 60.0


@dataclass(frozen=True)
class Answer:
    sent: float
    answered: float
    status: int
    retry_after: str | None
    nonce: str


@dataclass(frozen=True)
class Caller:
    http: httpx.AsyncClient
    url: str
    client_id: str
    key_id: str
    secret: bytes

    async def post(self, n: int, *, create: bool = True) -> Answer:
        """One signed request: a one-lot job, or (``create=False``) a body ingest refuses 415
        after the signature check and the limiter."""
        body = orjson.dumps(
            {
                "lots": [{"lot_id": f"r1-{n}", "images": [f"https://img.example/{n}.jpg"]}],
                "languages": ["en"],
            }
        )
        ctype = "application/json" if create else "text/plain"
        nonce = uuid.uuid4().hex
        headers = request_auth.sign(
            self.secret,
            client_id=self.client_id,
            key_id=self.key_id,
            method="POST",
            path="/api/v2/jobs",
            body=body,
            nonce=nonce,
        )
        sent = time.monotonic()
        response = await self.http.post(
            f"{self.url}/api/v2/jobs",
            content=body,
            headers={"content-type": ctype, **headers},
        )
        return Answer(
            sent,
            time.monotonic(),
            response.status_code,
            response.headers.get("retry-after"),
            nonce,
        )


async def paced(caller: Caller, count: int, seconds: float, *, create: bool = True) -> list[Answer]:
    """``count`` requests, the i-th sent at start + i x seconds / count (answers not awaited)."""
    start = time.monotonic()
    tasks = []
    for i in range(count):
        delay = start + i * seconds / count - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)  # the load's schedule, not a synchronisation
        tasks.append(asyncio.create_task(caller.post(i, create=create)))
    return list(await asyncio.gather(*tasks))


@pytest.fixture
async def ingest_url(
    migrated: str, kafka_settings: KafkaSettings, tmp_path: Path
) -> AsyncIterator[str]:
    port = free_port()
    env = settings_env(
        DB__URL=migrated,
        DB__POOL_MAX="20",
        KAFKA__BOOTSTRAP_SERVERS=kafka_settings.bootstrap_servers,
        KAFKA__TOPIC_PREFIX=kafka_settings.topic_prefix,
        KAFKA__PARTITIONS=str(kafka_settings.partitions),
        INGEST__PORT=str(port),
        INGEST__RATE_PER_S=str(RATE),
        INGEST__RATE_BURST=str(BURST),
        LOG__LEVEL="WARNING",
    )
    child = Child("gen_ingest", env, tmp_path / "ingest.log").start()
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=2) as http:

            async def healthy() -> bool:
                assert child.proc is not None
                assert child.proc.poll() is None, (tmp_path / "ingest.log").read_text()
                try:
                    return (await http.get(f"{url}/health")).status_code == 200
                except httpx.HTTPError:
                    return False

            await eventually(healthy, timeout=60, interval=0.1)
        yield url
    finally:
        assert child.stop() == 0, "SIGTERM stops ingest cleanly"


async def caller(pool: asyncpg.Pool, http: httpx.AsyncClient, url: str, name: str) -> Caller:
    client_id = f"{name}-{uuid.uuid4().hex[:8]}"
    async with pool.acquire() as conn:
        await request_auth.create_client(conn, client_id)
        key_id, secret = await request_auth.create_key(conn, client_id)
    return Caller(http, url, client_id, key_id, secret)


async def test_r1_burst_then_steady_rate_per_client(ingest_url: str, pool: asyncpg.Pool) -> None:
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        burst = await caller(pool, http, ingest_url, "r1-burst")
        other = await caller(pool, http, ingest_url, "r1-other")
        steady = await caller(pool, http, ingest_url, "r1-steady")
        burst_task = asyncio.create_task(paced(burst, BURST_REQUESTS, BURST_S, create=False))
        others = await asyncio.gather(*(other.post(i, create=False) for i in range(5)))
        answers = await burst_task
        if all(a.status != 429 for a in answers):  # ingest decided slower than rate + burst
            more = asyncio.create_task(paced(burst, MORE, BURST_S, create=False))
            answers += await more
        steady_answers = await paced(steady, int(RATE * STEADY_S), STEADY_S)
        seen = await arrivals(pool, burst.client_id)

    statuses = [a.status for a in answers]
    let_through = statuses.count(415)
    limited = [a for a in answers if a.status == 429]
    decided = sorted(answers, key=lambda a: seen[a.nonce])
    times = [seen[a.nonce] for a in decided]
    model = gcra(times)
    actual = [a.status == 415 for a in decided]
    mismatches = sum(m != x for m, x in zip(model, actual, strict=True))
    # Requests decided within milliseconds of each other may be seen in one order and decided
    # in the other; the running totals must still agree.
    drift = max(abs(sum(model[: i + 1]) - sum(actual[: i + 1])) for i in range(len(model)))
    span = times[-1] - times[0]
    steady_429 = sum(a.status == 429 for a in steady_answers)
    latencies = sorted(a.answered - a.sent for a in steady_answers)
    figures = {
        "burst_sent": len(answers),
        "sent_over_s": round(max(a.sent for a in answers) - min(a.sent for a in answers), 2),
        "decided_over_s": round(span, 2),
        "decisions_per_s": round(len(answers) / span, 1),
        "let_through": let_through,
        "let_through_of_first_100_decided": sum(actual[:BURST]),
        "limited": len(limited),
        "gcra_model_let_through": sum(model),
        "burst_plus_rate_x_span": round(BURST + RATE * span, 1),
        "model_mismatches": mismatches,
        "model_max_running_drift": drift,
        "retry_after_values": sorted({str(a.retry_after) for a in limited}),
        "other_client": [a.status for a in others],
        "steady_sent": len(steady_answers),
        "steady_429": steady_429,
        "steady_latency_p50_p99_s": [
            round(latencies[len(latencies) // 2], 3),
            round(latencies[int(len(latencies) * 0.99)], 3),
        ],
    }
    announce("R1 GCRA", figures)
    assert set(statuses) <= {415, 429}, sorted(set(statuses))
    assert limited, f"the limiter never refused: {figures}"
    assert sum(actual[:BURST]) >= BURST - 2, figures  # the burst goes through at once
    assert abs(sum(model) - let_through) <= 2, figures
    assert drift <= 3, figures
    assert all(a.retry_after is not None and int(a.retry_after) >= 1 for a in limited), figures
    assert [a.status for a in others] == [415] * 5, "another client's bucket is its own"
    assert {a.status for a in steady_answers} <= {201, 429}, figures
    assert steady_429 < 0.01 * len(steady_answers), figures


async def arrivals(pool: asyncpg.Pool, client_id: str) -> dict[str, float]:
    """When ingest saw each nonce of ``client_id`` (epoch seconds, PostgreSQL's clock)."""
    rows = await pool.fetch(
        "SELECT nonce, extract(epoch FROM seen_at)::float8 AS t FROM request_nonces "
        "WHERE client_id = $1",
        client_id,
    )
    return {r["nonce"]: r["t"] for r in rows}


def gcra(times: list[float], rate: float = RATE, burst: int = BURST) -> list[bool]:
    """The reference GCRA (the SQL of gen_ingest.admission.acquire_rate): allowed or not, per
    time."""
    emission, tau = 1.0 / rate, burst / rate
    tat: float | None = None
    out = []
    for now in times:
        start = now if tat is None else max(tat, now)
        allowed = start + emission - now <= tau + 1e-9
        if allowed:
            tat = start + emission
        out.append(allowed)
    return out
