"""Vision's ``/metrics`` (``VISION__METRICS_PORT``): everything read at scrape time.

- ``gen_consumer_lag`` / ``_committed_offset`` / ``_end_offset`` of group "vision";
- ``gen_queue_depth{queue="vision_work",state}`` — queued and running lots (partial indexes);
- ``gen_breaker_state`` / ``_trips_total`` / ``_rejected_total`` of the OpenAI breaker;
- ``gen_model_calls_total{stage,outcome}`` and ``gen_model_calls_in_flight`` (``vision_calls``),
  ``gen_model_tokens_total{stage,kind}`` and ``gen_model_cost_usd_total`` (``vision_results``):
  whole-table sums, so read at most every ``TOTALS_EVERY_S``.
"""

from __future__ import annotations

from functools import partial

import asyncpg
from gen_common import breaker_metrics, kafka, metrics
from gen_common.breaker import Breaker
from gen_common.events import JOBS_CONTROL, LOTS_SUBMITTED
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from gen_vision.settings import VisionSettings

STAGE = "vision"
TOTALS_EVERY_S = 30.0
TOKENS = ("input", "cached", "output", "reasoning")


async def queue_depth(pool: asyncpg.Pool) -> list[Metric]:
    rows = await pool.fetch(
        """SELECT status, count(*) AS n FROM vision_work
           WHERE status IN ('queued', 'running') GROUP BY status"""
    )
    family = GaugeMetricFamily("gen_queue_depth", "Work rows by state", labels=["queue", "state"])
    metrics.by_label(
        family, rows, key="status", expected=("queued", "running"), fixed=["vision_work"]
    )
    return [family]


async def totals(pool: asyncpg.Pool) -> list[Metric]:
    async with pool.acquire() as conn:
        calls = await conn.fetch("SELECT outcome, count(*) AS n FROM vision_calls GROUP BY outcome")
        sums = await conn.fetchrow(
            """SELECT sum(input_tokens) AS input, sum(cached_tokens) AS cached,
                      sum(output_tokens) AS output, sum(reasoning_tokens) AS reasoning,
                      sum(cost_usd) AS cost FROM vision_results"""
        )
    done = CounterMetricFamily(
        "gen_model_calls", "Finished model calls by outcome", labels=["stage", "outcome"]
    )
    metrics.by_label(
        done,
        [r for r in calls if r["outcome"] is not None],
        key="outcome",
        expected=("ok",),
        fixed=[STAGE],
    )
    running = GaugeMetricFamily(
        "gen_model_calls_in_flight", "Calls started, not finished", labels=["stage"]
    )
    running.add_metric([STAGE], sum(r["n"] for r in calls if r["outcome"] is None))
    tokens = CounterMetricFamily(
        "gen_model_tokens", "Tokens of stored results", labels=["stage", "kind"]
    )
    for kind in TOKENS:
        tokens.add_metric([STAGE, kind], float(sums[kind] or 0) if sums else 0.0)
    cost = CounterMetricFamily(
        "gen_model_cost_usd", "Cost of stored results (USD)", labels=["stage"]
    )
    cost.add_metric([STAGE], float(sums["cost"] or 0) if sums else 0.0)
    return [done, running, tokens, cost]


async def serve(settings: VisionSettings, *, pool: asyncpg.Pool, breaker: Breaker) -> None:
    """Serve vision's /metrics until cancelled (returns at once when no port is configured)."""
    o = settings.vision
    if o.metrics_port is None:
        return
    m = metrics.Metrics()
    breaker_metrics.register(m, breaker, stage=STAGE)
    m.add_source("queue", partial(queue_depth, pool))
    m.add_source("totals", metrics.cached(partial(totals, pool), every_s=TOTALS_EVERY_S))
    topics = [LOTS_SUBMITTED, JOBS_CONTROL]
    async with kafka.open_lag_probe(settings.kafka, group=STAGE, topics=topics) as probe:
        m.add_source("consumer_lag", metrics.consumer_lag(probe))
        await metrics.serve(m, host=o.metrics_host, port=o.metrics_port)
