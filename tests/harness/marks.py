"""Marker sets that several test modules share (the markers themselves: pyproject.toml)."""

from __future__ import annotations

import pytest

# Real service processes on the test's PostgreSQL and Kafka, running for minutes.
SLOW_PROCESS_TEST = (pytest.mark.pg, pytest.mark.kafka, pytest.mark.e2e, pytest.mark.slow)
