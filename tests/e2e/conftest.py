"""End-to-end fixtures: one whole system (tests.harness.system) per test module.

A module tunes its system with ``SYSTEM_OVERRIDES`` (per-service environment) and ``SIM_CONFIG``
(the simulator's start-up config). When a test fails, the tail of every service log is printed
in its report.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.harness.system import System, open_system


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.stash[_FAILED] = report.failed


_FAILED = pytest.StashKey[bool]()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def system(
    request: pytest.FixtureRequest,
    migrated: str,
    kafka_bootstrap: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[System]:
    root = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    async with open_system(
        db_url=migrated,
        bootstrap=kafka_bootstrap,
        root=root,
        sim_config=getattr(request.module, "SIM_CONFIG", None),
        overrides=getattr(request.module, "SYSTEM_OVERRIDES", None),
    ) as running:
        yield running


@pytest.fixture(autouse=True)
def _log_tails_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if request.node.stash.get(_FAILED, False) and "system" in request.fixturenames:
        system: System = request.getfixturevalue("system")
        request.node.add_report_section("teardown", "service logs", system.tails(40))


@pytest_asyncio.fixture(loop_scope="session")
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=120) as client:
        yield client
