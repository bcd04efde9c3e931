"""The subprocess helper and start-up configuration (--config)."""

from __future__ import annotations

import openai
import pytest
from openai import OpenAI
from openai_sim.process import running


def test_start_config_applies_and_survives_reset() -> None:
    start = {"faults": {"error_503": 1.0, "should_retry": "false"}, "auth": {"key_prefix": "k-"}}
    with running(start) as sim:
        assert sim.base_url.startswith("http://127.0.0.1:")
        with OpenAI(
            base_url=sim.base_url, api_key="k-1", max_retries=2, _strict_response_validation=True
        ) as client:
            with pytest.raises(openai.InternalServerError):
                client.models.list()
            sim.admin.config({"faults": {"error_503": 0.0}})
            assert client.models.list().data
            sim.admin.reset()
            with pytest.raises(openai.InternalServerError):
                client.models.list()
        assert sim.admin.stats()["totals"]["calls"] == 1
    assert sim.process.returncode is not None
