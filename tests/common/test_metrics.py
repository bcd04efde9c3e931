"""gen_common.metrics: scrape-time sources, consumer lag from real Kafka, breaker families, the
HTTP middleware (request metrics and the request's trace context), the /metrics-only server."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest
from gen_common import breaker_metrics, kafka, metrics, stage_metrics, tracing
from gen_common.breaker import Breaker, BreakerSettings
from gen_common.db import Conn
from gen_common.events import JOBS_CONTROL, LOTS_SUBMITTED, JobCancelRequested
from gen_common.settings import KafkaSettings
from openai_sim.process import free_port
from prometheus_client.core import GaugeMetricFamily, Metric
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tests.harness.processes import eventually


async def _text(m: metrics.Metrics) -> list[str]:
    return (await m.render()).decode().splitlines()


async def test_breaker_families_follow_the_live_breaker() -> None:
    breaker = Breaker(BreakerSettings(minimum_calls=1, window=1))
    m = metrics.Metrics()
    breaker_metrics.register(m, breaker, stage="vision")
    assert 'gen_breaker_state{stage="vision"} 0.0' in await _text(m)
    breaker.record_failure()
    lines = await _text(m)
    assert 'gen_breaker_state{stage="vision"} 2.0' in lines
    assert 'gen_breaker_trips_total{stage="vision"} 1.0' in lines
    assert not breaker.allow()
    assert 'gen_breaker_rejected_total{stage="vision"} 1.0' in await _text(m)


async def test_a_failing_source_is_left_out_and_counted() -> None:
    m = metrics.Metrics()
    calls = 0

    async def good() -> list[Metric]:
        nonlocal calls
        calls += 1
        family = GaugeMetricFamily("gen_test_value", "a value", labels=["k"])
        family.add_metric(["a"], calls)
        return [family]

    async def broken() -> list[Metric]:
        raise OSError("database gone")

    m.add_source("good", good)
    m.add_source("broken", broken)
    lines = await _text(m)
    assert 'gen_test_value{k="a"} 1.0' in lines
    assert 'gen_metrics_source_errors_total{source="broken"} 1.0' in lines
    assert 'gen_test_value{k="a"} 2.0' in await _text(m), "sources run on every scrape"


async def test_cached_source_runs_at_most_once_per_interval() -> None:
    runs = 0

    async def source() -> list[Metric]:
        nonlocal runs
        runs += 1
        return []

    wrapped = metrics.cached(source, every_s=3600)
    await wrapped()
    await wrapped()
    assert runs == 1


@pytest.mark.pg
async def test_work_queue_depth_counts_queued_and_running_rows(
    pool: asyncpg.Pool, unique: str
) -> None:
    table = f"test_work_{unique}"
    await pool.execute(
        f"CREATE TABLE {table} "
        "(id serial PRIMARY KEY, status text NOT NULL, lease_until timestamptz)"
    )
    try:
        m = metrics.Metrics()
        m.add_source("queue", lambda: stage_metrics.work_queue_depth(pool, table))
        lines = await _text(m)
        assert f'gen_queue_depth{{queue="{table}",state="queued"}} 0.0' in lines
        now = datetime.now(UTC)  # a running row holds a lease (gen_common.jobs)
        await pool.executemany(
            f"INSERT INTO {table} (status, lease_until) VALUES ($1, $2)",
            [
                ("queued", None),
                ("queued", None),
                ("running", now),
                ("done", None),
                ("failed", None),
            ],
        )
        lines = await _text(m)
        assert f'gen_queue_depth{{queue="{table}",state="queued"}} 2.0' in lines
        assert f'gen_queue_depth{{queue="{table}",state="running"}} 1.0' in lines
        assert not [line for line in lines if 'state="done"' in line]
    finally:
        await pool.execute(f"DROP TABLE {table}")


@pytest.mark.pg
async def test_work_queue_depth_refuses_a_table_name_that_is_not_an_identifier(
    pool: asyncpg.Pool,
) -> None:
    with pytest.raises(ValueError, match="not a work table name"):
        await stage_metrics.work_queue_depth(pool, "vision_work; DROP TABLE jobs")


CALLS = "SELECT * FROM (VALUES ('ok', 3), ('upstream', 1), (NULL, 2)) AS c(outcome, n)"
USAGE = """SELECT * FROM (VALUES (10, 1, 5, 2, 0.25), (20, 0, 7, 0, 0.5))
           AS u(input, cached, output, reasoning, cost)"""


@pytest.mark.pg
async def test_model_totals_from_a_call_log_and_a_results_table(pool: asyncpg.Pool) -> None:
    totals = stage_metrics.ModelTotals(
        stage="s", calls_sql=CALLS, usage_sql=USAGE, outcomes=("ok", "refusal"), in_flight=True
    )
    m = metrics.Metrics()
    m.add_source("totals", lambda: stage_metrics.model_totals(pool, totals))
    lines = await _text(m)
    for line in [
        'gen_model_calls_total{outcome="ok",stage="s"} 3.0',
        'gen_model_calls_total{outcome="upstream",stage="s"} 1.0',
        'gen_model_calls_total{outcome="refusal",stage="s"} 0.0',
        'gen_model_calls_in_flight{stage="s"} 2.0',
        'gen_model_tokens_total{kind="input",stage="s"} 30.0',
        'gen_model_tokens_total{kind="cached",stage="s"} 1.0',
        'gen_model_tokens_total{kind="output",stage="s"} 12.0',
        'gen_model_tokens_total{kind="reasoning",stage="s"} 2.0',
        'gen_model_cost_usd_total{stage="s"} 0.75',
    ]:
        assert line in lines


@pytest.mark.pg
async def test_model_totals_with_the_usage_on_the_outcome_rows(pool: asyncpg.Pool) -> None:
    """One query (translate's shape): outcomes with their usage; no in-flight gauge."""
    calls = """SELECT * FROM (VALUES ('translated', 2, 10, 0, 4, 0, 0.5),
                                     ('failed', 1, 3, 0, 0, 0, 0.0))
               AS r(outcome, n, input, cached, output, reasoning, cost)"""
    totals = stage_metrics.ModelTotals(stage="t", calls_sql=calls, outcomes=("time_limit",))
    m = metrics.Metrics()
    m.add_source("totals", lambda: stage_metrics.model_totals(pool, totals))
    rendered = await _text(m)
    assert 'gen_model_calls_total{outcome="translated",stage="t"} 2.0' in rendered
    assert 'gen_model_calls_total{outcome="failed",stage="t"} 1.0' in rendered
    assert 'gen_model_calls_total{outcome="time_limit",stage="t"} 0.0' in rendered
    assert not [line for line in rendered if "gen_model_calls_in_flight" in line]
    assert 'gen_model_tokens_total{kind="input",stage="t"} 13.0' in rendered
    assert 'gen_model_cost_usd_total{stage="t"} 0.5' in rendered


@pytest.mark.kafka
async def test_consumer_lag_is_end_minus_committed(kafka_settings: KafkaSettings) -> None:
    settings = kafka_settings.model_copy(update={"partitions": 2})
    await kafka.ensure_topics(settings, [JOBS_CONTROL, LOTS_SUBMITTED])
    events = [JobCancelRequested(job_id=uuid.uuid4()) for _ in range(5)]
    async with kafka.open_publisher(settings) as publisher:
        await publisher.publish_many(events)
    m = metrics.Metrics()
    async with kafka.open_lag_probe(settings, group="g", topics=[JOBS_CONTROL]) as probe:
        m.add_source("lag", metrics.consumer_lag(probe))
        lines = await _text(m)
        before = await probe.read()
    lag = [line for line in lines if line.startswith("gen_consumer_lag{")]
    assert len(lag) == 2, lines  # one per partition
    assert sum(float(line.rsplit(" ", 1)[1]) for line in lag) == 5.0
    assert all('group="g"' in line and 'topic="jobs.control"' in line for line in lag)
    assert sum(p.end for p in before) == 5
    assert all(p.committed is None for p in before)


@pytest.mark.kafka
@pytest.mark.pg
async def test_lag_falls_to_zero_once_the_group_commits(
    kafka_settings: KafkaSettings, pool: asyncpg.Pool
) -> None:
    await kafka.ensure_topics(kafka_settings, [JOBS_CONTROL])
    async with kafka.open_publisher(kafka_settings) as publisher:
        await publisher.publish_many(JobCancelRequested(job_id=uuid.uuid4()) for _ in range(4))
    seen: list[JobCancelRequested] = []

    async def handler(event: JobCancelRequested, conn: Conn) -> None:
        seen.append(event)

    sub = kafka.Subscription(JOBS_CONTROL, JobCancelRequested, handler)
    task = asyncio.create_task(
        kafka.consume(kafka_settings, pool=pool, group="g", subscriptions=[sub])
    )
    try:
        async with kafka.open_lag_probe(kafka_settings, group="g", topics=[JOBS_CONTROL]) as probe:

            async def caught_up() -> bool:
                parts = await probe.read()
                busy = [
                    p for p in parts if p.end > 0
                ]  # partitions no record went to: never committed
                return len(seen) == 4 and all(p.lag == 0 and p.committed == p.end for p in busy)

            await eventually(caught_up, timeout=30)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _echo_trace(request: Request) -> PlainTextResponse:
    return PlainTextResponse(tracing.current() or "")


def _app(http: metrics.HttpMetrics, *, start_traces: bool = True) -> Starlette:
    app = Starlette(routes=[Route("/items/{item_id}", _echo_trace)])
    app.add_middleware(metrics.HttpMiddleware, http=http, start_traces=start_traces)
    return app


async def test_http_middleware_counts_by_route_and_binds_the_request_trace() -> None:
    m = metrics.Metrics()
    app = _app(metrics.HttpMetrics(m.registry, "demo"))
    given = tracing.new()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        echoed = (await client.get("/items/7", headers={"traceparent": given})).text
        fresh = (await client.get("/items/8")).text
        bad = (await client.get("/items/9", headers={"traceparent": "00-zz-zz-01"})).text
        await client.get("/nowhere")
    assert echoed == given
    assert tracing.valid(fresh)
    assert tracing.trace_id(fresh) != tracing.trace_id(given)
    assert tracing.valid(bad), "an invalid header starts a new trace"
    lines = await _text(m)
    assert 'demo_http_requests_total{code="200",method="GET",route="/items/{item_id}"} 3.0' in lines
    assert 'demo_http_requests_total{code="404",method="GET",route="unmatched"} 1.0' in lines
    assert any(
        line.startswith('demo_http_request_seconds_count{route="/items/{item_id}"}')
        for line in lines
    )


async def test_without_start_traces_only_a_given_trace_is_bound() -> None:
    app = _app(metrics.HttpMetrics(metrics.Metrics().registry, "demo"), start_traces=False)
    given = tracing.new()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get("/items/1", headers={"traceparent": given})).text == given
        assert (await client.get("/items/2")).text == ""


async def test_metrics_server_answers_metrics_and_json_errors() -> None:
    m = metrics.Metrics()
    breaker_metrics.register(m, Breaker(BreakerSettings()), stage="translate")
    port = free_port()
    task = asyncio.create_task(metrics.serve(m, host="127.0.0.1", port=port))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:

            async def up() -> bool:
                try:
                    return (await client.get("/metrics")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(up, timeout=10)
            r = await client.get("/metrics")
            assert 'gen_breaker_state{stage="translate"} 0.0' in r.text.splitlines()
            assert r.headers["content-type"].startswith("text/plain")
            missing = await client.get("/other")
            assert (missing.status_code, missing.json()) == (404, {"error": "Not found"})
            wrong = await client.post("/metrics")
            assert (wrong.status_code, wrong.json()) == (405, {"error": "Method not allowed"})
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
