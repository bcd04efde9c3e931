"""The contract tests drive ingest through the same fixtures as tests/ingest."""

from tests.ingest.conftest import ingest, make_ingest, pipeline

__all__ = ["ingest", "make_ingest", "pipeline"]
