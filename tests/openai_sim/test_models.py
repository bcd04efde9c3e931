"""GET /v1/models and /v1/models/{id} with shutdown dates."""

from __future__ import annotations

import openai
import pytest
from openai import OpenAI


def test_list_and_retrieve(client: OpenAI) -> None:
    models = {m.id: m for m in client.models.list()}
    assert "gpt-6-luna" in models
    assert "o4-mini" not in models
    mini = client.models.retrieve("gpt-4.1-mini")
    assert mini.shutdown_date == "2027-01-14"
    assert client.models.retrieve("gpt-6-luna").owned_by == "system"


def test_retrieve_retired_model(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4.1-nano")
