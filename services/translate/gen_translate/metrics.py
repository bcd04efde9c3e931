"""Translate's ``/metrics`` (``TRANSLATE__METRICS_PORT``): everything read at scrape time.

- ``gen_consumer_lag`` / ``_committed_offset`` / ``_end_offset`` of group "translate";
- ``gen_queue_depth{queue="translate_work",state}`` — queued and running (lot, language) rows;
- ``gen_breaker_state`` / ``_trips_total`` / ``_rejected_total`` of the OpenAI breaker;
- ``gen_model_calls_total{stage,outcome}`` — finished (lot, language) outcomes (translated,
  time_limit, failed) from ``translate_results``; ``gen_model_tokens_total{stage,kind}`` and
  ``gen_model_cost_usd_total``: whole-table sums, so read at most every ``TOTALS_EVERY_S``.
"""

from __future__ import annotations

from functools import partial

import asyncpg
from gen_common import breaker_metrics, kafka, metrics, stage_metrics
from gen_common.breaker import Breaker
from gen_common.events import JOBS_CONTROL, LOTS_ASSESSED

from gen_translate.settings import TranslateSettings

STAGE = "translate"
TOTALS_EVERY_S = 30.0
TOTALS = stage_metrics.ModelTotals(
    stage=STAGE,
    calls_sql="""SELECT outcome, count(*) AS n, sum(input_tokens) AS input,
                        sum(cached_tokens) AS cached, sum(output_tokens) AS output,
                        sum(reasoning_tokens) AS reasoning, sum(cost_usd) AS cost
                 FROM translate_results GROUP BY outcome""",
    outcomes=("translated", "time_limit", "failed"),
)


async def serve(settings: TranslateSettings, *, pool: asyncpg.Pool, breaker: Breaker) -> None:
    """Serve translate's /metrics until cancelled (returns at once when no port is configured)."""
    o = settings.translate
    if o.metrics_port is None:
        return
    m = metrics.Metrics()
    breaker_metrics.register(m, breaker, stage=STAGE)
    m.add_source("queue", partial(stage_metrics.work_queue_depth, pool, "translate_work"))
    totals = partial(stage_metrics.model_totals, pool, TOTALS)
    m.add_source("totals", metrics.cached(totals, every_s=TOTALS_EVERY_S))
    topics = [LOTS_ASSESSED, JOBS_CONTROL]
    async with kafka.open_lag_probe(settings.kafka, group=STAGE, topics=topics) as probe:
        m.add_source("consumer_lag", metrics.consumer_lag(probe))
        await metrics.serve(m, host=o.metrics_host, port=o.metrics_port)
