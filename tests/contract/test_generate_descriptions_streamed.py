"""Every generate-descriptions contract row again, with every body taking the spooled path.

gen_ingest.stream parses bodies above ``STREAM_ABOVE`` bytes incrementally (issue 4); with the
threshold at 0 each request here is spooled and read with ijson instead of orjson, and must
answer exactly as the in-memory path does.
"""

from __future__ import annotations

import pytest
from gen_ingest import stream

from tests.contract.test_generate_descriptions import *  # noqa: F403


@pytest.fixture(autouse=True)
def _spool_every_body(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream, "STREAM_ABOVE", 0)
