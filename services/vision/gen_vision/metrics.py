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
from gen_common import breaker_metrics, kafka, metrics, stage_metrics
from gen_common.breaker import Breaker
from gen_common.events import JOBS_CONTROL, LOTS_SUBMITTED

from gen_vision.settings import VisionSettings

STAGE = "vision"
TOTALS_EVERY_S = 30.0
TOTALS = stage_metrics.ModelTotals(
    stage=STAGE,
    calls_sql="SELECT outcome, count(*) AS n FROM vision_calls GROUP BY outcome",
    usage_sql="""SELECT sum(input_tokens) AS input, sum(cached_tokens) AS cached,
                        sum(output_tokens) AS output, sum(reasoning_tokens) AS reasoning,
                        sum(cost_usd) AS cost FROM vision_results""",
    outcomes=("ok",),
    in_flight=True,
)


async def serve(settings: VisionSettings, *, pool: asyncpg.Pool, breaker: Breaker) -> None:
    """Serve vision's /metrics until cancelled (returns at once when no port is configured)."""
    o = settings.vision
    if o.metrics_port is None:
        return
    m = metrics.Metrics()
    breaker_metrics.register(m, breaker, stage=STAGE)
    m.add_source("queue", partial(stage_metrics.work_queue_depth, pool, "vision_work"))
    totals = partial(stage_metrics.model_totals, pool, TOTALS)
    m.add_source("totals", metrics.cached(totals, every_s=TOTALS_EVERY_S))
    topics = [LOTS_SUBMITTED, JOBS_CONTROL]
    async with kafka.open_lag_probe(settings.kafka, group=STAGE, topics=topics) as probe:
        m.add_source("consumer_lag", metrics.consumer_lag(probe))
        await metrics.serve(m, host=o.metrics_host, port=o.metrics_port)
