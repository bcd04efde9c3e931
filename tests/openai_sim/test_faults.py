"""Each injected fault surfaces through the SDK as the real one does; retries are counted."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import openai
import pytest
from openai import OpenAI
from openai_sim.process import RunningSim

from .conftest import vision_input


@pytest.fixture
def retrying(sim: RunningSim) -> Iterator[OpenAI]:
    with OpenAI(
        base_url=sim.base_url, api_key="sk-test", max_retries=2, _strict_response_validation=True
    ) as c:
        yield c


def test_500_is_retried_and_counted(retrying: OpenAI, sim: RunningSim) -> None:
    sim.admin.config({"faults": {"error_500": 1.0, "retry_after_ms": 10}})
    with pytest.raises(openai.InternalServerError) as info:
        retrying.responses.create(model="gpt-6-luna", input="hi")
    assert info.value.status_code == 500
    stats = sim.admin.stats()
    assert stats["endpoints"]["responses"]["calls"] == 3
    assert stats["totals"]["retried_calls"] == 2
    assert stats["faults"]["error_500"] == 3


def test_503_with_should_retry_false_is_not_retried(retrying: OpenAI, sim: RunningSim) -> None:
    sim.admin.config({"faults": {"error_503": 1.0, "should_retry": "false"}})
    with pytest.raises(openai.InternalServerError) as info:
        retrying.responses.create(model="gpt-6-luna", input="hi")
    assert info.value.status_code == 503
    assert sim.admin.stats()["totals"]["calls"] == 1


def test_429_storm_then_recovery(retrying: OpenAI, sim: RunningSim) -> None:
    sim.admin.config({"storm": {"kind": "429", "duration_s": 0.6, "retry_after_ms": 20}})
    with pytest.raises(openai.RateLimitError) as info:
        retrying.responses.create(model="gpt-6-luna", input="hi")
    assert info.value.code == "rate_limit_exceeded"
    assert info.value.response.headers["retry-after-ms"] == "20"
    assert sim.admin.stats()["totals"]["retried_calls"] == 2
    time.sleep(0.7)
    assert retrying.responses.create(model="gpt-6-luna", input="hi").status == "completed"


def test_503_storm_only_hits_listed_endpoints(client: OpenAI, sim: RunningSim) -> None:
    sim.admin.config({"storm": {"kind": "503", "duration_s": 30, "endpoints": ["responses"]}})
    with pytest.raises(openai.InternalServerError):
        client.responses.create(model="gpt-6-luna", input="hi")
    assert client.models.retrieve("gpt-6-luna").id == "gpt-6-luna"


def test_rpm_limit(client: OpenAI, sim: RunningSim) -> None:
    sim.admin.config({"rate_limits": {"models": {"gpt-6-luna": {"rpm": 2, "tpm": 1_000_000}}}})
    for _ in range(2):
        client.responses.create(model="gpt-6-luna", input="hi")
    with pytest.raises(openai.RateLimitError) as info:
        client.responses.create(model="gpt-6-luna", input="hi")
    assert info.value.type == "requests"
    assert "on requests per min (RPM): Limit 2" in info.value.message
    headers = info.value.response.headers
    assert int(headers["retry-after"]) >= 1
    assert int(headers["retry-after-ms"]) > 0
    assert headers["x-ratelimit-remaining-requests"] == "0"


def test_tpm_limit(client: OpenAI, sim: RunningSim) -> None:
    sim.admin.config({"rate_limits": {"models": {"gpt-6-luna": {"rpm": 100, "tpm": 1000}}}})
    client.responses.create(model="gpt-6-luna", input="x" * 2400)
    with pytest.raises(openai.RateLimitError) as info:
        client.responses.create(model="gpt-6-luna", input="x" * 2400)
    assert info.value.type == "tokens"


def test_insufficient_quota(client: OpenAI, sim: RunningSim) -> None:
    sim.admin.config({"rate_limits": {"insufficient_quota": True}})
    with pytest.raises(openai.RateLimitError) as info:
        client.responses.create(model="gpt-6-luna", input="hi")
    assert info.value.code == "insufficient_quota"
    assert info.value.type == "insufficient_quota"


@pytest.mark.parametrize("kind", ["timeout", "hang"])
def test_timeout_and_hang(client: OpenAI, sim: RunningSim, kind: str) -> None:
    sim.admin.config({"faults": {kind: 1.0, "timeout_s": 2.0}})
    with pytest.raises(openai.APITimeoutError):
        client.with_options(timeout=0.3).responses.create(model="gpt-6-luna", input="hi")


def test_malformed_body(client: OpenAI, sim: RunningSim) -> None:
    sim.admin.config({"faults": {"malformed": 1.0}})
    # The SDK surfaces an unparseable 200 body as the json module's own error.
    with pytest.raises(json.JSONDecodeError):
        client.responses.create(model="gpt-6-luna", input="hi")


def test_connection_drop(client: OpenAI, sim: RunningSim) -> None:
    sim.admin.config({"faults": {"drop": 1.0}})
    with pytest.raises(openai.APIConnectionError):
        client.responses.create(model="gpt-6-luna", input="hi")


def test_latency_per_kind(client: OpenAI, sim: RunningSim) -> None:
    sim.admin.config(
        {
            "latency": {
                "kinds": {
                    "vision": {"dist": "fixed", "ms": 400},
                    "text": {"dist": "fixed", "ms": 50},
                }
            }
        }
    )
    started = time.perf_counter()
    client.responses.create(model="gpt-6-luna", input=vision_input(["https://a/1.jpg"]))
    vision_s = time.perf_counter() - started
    started = time.perf_counter()
    client.responses.create(model="gpt-6-luna", input="hi")
    text_s = time.perf_counter() - started
    assert vision_s >= 0.4
    assert 0.05 <= text_s < 0.4


def test_other_config_changes_do_not_restart_a_storm(client: OpenAI, sim: RunningSim) -> None:
    sim.admin.config({"storm": {"kind": "500", "duration_s": 0.3}})
    time.sleep(0.4)
    sim.admin.config({"latency": {"default": {"dist": "uniform", "min_ms": 1, "max_ms": 2}}})
    assert client.responses.create(model="gpt-6-luna", input="hi").status == "completed"
