"""Scrape-time families of a model stage (vision, translate), read from its own tables.

- :func:`work_queue_depth` — ``gen_queue_depth{queue,state}`` of a :mod:`gen_common.jobs` work
  table (the table name is checked by :func:`gen_common.jobs.table_name`);
- :func:`model_totals` — ``gen_model_calls_total``, ``gen_model_calls_in_flight``,
  ``gen_model_tokens_total`` and ``gen_model_cost_usd_total`` from the stage's SQL
  (:class:`ModelTotals`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from gen_common import jobs, metrics

TOKEN_KINDS = ("input", "cached", "output", "reasoning")
WORK_STATES = ("queued", "running")


async def work_queue_depth(pool: asyncpg.Pool, table: str) -> list[Metric]:
    """``gen_queue_depth{queue=<table>,state}``: the queued and running rows of a work table
    (:mod:`gen_common.jobs`). Each count matches a partial index: the due-rows index
    (``status = 'queued'``) and the leased-rows index (``lease_until IS NOT NULL``)."""
    t = jobs.table_name(table)
    rows = await pool.fetch(
        f"""SELECT 'queued' AS status, count(*) AS n FROM {t} WHERE status = 'queued'
            UNION ALL
            SELECT 'running', count(*) FROM {t}
            WHERE status = 'running' AND lease_until IS NOT NULL"""
    )
    family = GaugeMetricFamily("gen_queue_depth", "Work rows by state", labels=["queue", "state"])
    metrics.by_label(family, rows, key="status", expected=WORK_STATES, fixed=[table])
    return [family]


@dataclass(frozen=True, slots=True)
class ModelTotals:
    """Where a model stage's totals come from (SQL of the stage's own tables).

    ``calls_sql``: rows ``(outcome, n)``, finished calls by outcome; with ``in_flight``, a NULL
    outcome counts calls started and not finished. ``usage_sql``: rows with the columns
    ``input``, ``cached``, ``output``, ``reasoning`` and ``cost`` of the stored results, summed;
    None when ``calls_sql``'s rows carry them. ``outcomes`` are shown as 0 before the first.
    """

    stage: str
    calls_sql: str
    usage_sql: str | None = None
    outcomes: Sequence[str] = ()
    in_flight: bool = False


async def model_totals(pool: asyncpg.Pool, totals: ModelTotals) -> list[Metric]:
    """``gen_model_calls_total{stage,outcome}``, ``gen_model_calls_in_flight{stage}`` (with
    ``in_flight``), ``gen_model_tokens_total{stage,kind}`` and ``gen_model_cost_usd_total``.
    Whole-table aggregates: serve them through :func:`gen_common.metrics.cached`."""
    async with pool.acquire() as conn:
        calls = await conn.fetch(totals.calls_sql)
        usage = calls if totals.usage_sql is None else await conn.fetch(totals.usage_sql)
    stage = totals.stage
    done = CounterMetricFamily(
        "gen_model_calls", "Finished model calls by outcome", labels=["stage", "outcome"]
    )
    finished = [r for r in calls if r["outcome"] is not None]
    metrics.by_label(done, finished, key="outcome", expected=totals.outcomes, fixed=[stage])
    families: list[Metric] = [done]
    if totals.in_flight:
        running = GaugeMetricFamily(
            "gen_model_calls_in_flight", "Calls started, not finished", labels=["stage"]
        )
        running.add_metric([stage], float(sum(r["n"] for r in calls if r["outcome"] is None)))
        families.append(running)
    tokens = CounterMetricFamily(
        "gen_model_tokens", "Tokens of stored results", labels=["stage", "kind"]
    )
    for kind in TOKEN_KINDS:
        tokens.add_metric([stage, kind], float(sum(r[kind] or 0 for r in usage)))
    cost = CounterMetricFamily(
        "gen_model_cost_usd", "Cost of stored results (USD)", labels=["stage"]
    )
    cost.add_metric([stage], float(sum(r["cost"] or 0 for r in usage)))
    return [*families, tokens, cost]
