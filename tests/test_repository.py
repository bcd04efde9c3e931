"""Generated and hand-written repository artefacts stay in step with the code."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from gen_devstack import env_example

REPO = Path(__file__).resolve().parents[1]


def test_env_example_lists_every_setting() -> None:
    assert (REPO / ".env.example").read_text() == env_example.render(), (
        "run `make env-example` and commit .env.example"
    )


def test_ci_runs_the_test_command_the_readme_gives() -> None:
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    assert "make up" in readme
    assert "make test" in readme
    assert "\nmake test\n" in ci


def test_compose_runs_every_service_and_the_migration_job() -> None:
    compose = (REPO / "docker-compose.yml").read_text()
    for name in (
        "kafka",
        "postgres",
        "migrate",
        "ingest",
        "status",
        "vision",
        "translate",
        "notifier",
        "proxy",
        "openai-sim",
    ):
        assert f"\n  {name}:" in compose, name


def _compose_command() -> list[str]:
    if (
        shutil.which("docker")
        and subprocess.run(
            ["docker", "compose", "version"], capture_output=True, check=False
        ).returncode
        == 0
    ):
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return []


def test_docker_compose_file_is_valid() -> None:
    command = _compose_command()
    assert command, "make install provides docker-compose when `docker compose` is missing"
    result = subprocess.run(
        [*command, "config", "--quiet"], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
