"""The /_sim/ admin API: counters, call log bound, config merge, reset, clock."""

from __future__ import annotations

from openai import OpenAI
from openai_sim.process import RunningSim


def test_counters_per_endpoint_and_model(client: OpenAI, sim: RunningSim) -> None:
    client.responses.create(model="gpt-6-luna", input="a")
    client.responses.create(model="gpt-4.1-mini", input="b")
    client.models.list()
    stats = sim.admin.stats()
    assert stats["totals"]["calls"] == 3
    assert stats["endpoints"]["responses"]["calls"] == 2
    assert stats["endpoints"]["models.list"]["calls"] == 1
    assert stats["models"]["gpt-4.1-mini"]["calls"] == 1
    assert stats["totals"]["retried_calls"] == 0


def test_call_log_is_bounded(client: OpenAI, sim: RunningSim) -> None:
    sim.admin.config({"call_log_size": 3})
    for i in range(5):
        client.responses.create(model="gpt-6-luna", input="a", metadata={"i": str(i)})
    assert [c["metadata"]["i"] for c in sim.admin.calls()] == ["2", "3", "4"]


def test_reset_restores_start_config(client: OpenAI, sim: RunningSim) -> None:
    sim.admin.config({"faults": {"error_500": 1.0}})
    sim.admin.reset()
    assert client.responses.create(model="gpt-6-luna", input="a").status == "completed"
    assert sim.admin.stats()["totals"]["calls"] == 1


def test_clock_advance_and_speed(sim: RunningSim) -> None:
    before = sim.admin.clock()
    after = sim.admin.clock(advance=3600, speed=0.0)
    assert after - before >= 3600
    assert sim.admin.clock() == after
