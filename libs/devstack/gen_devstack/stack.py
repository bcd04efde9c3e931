"""The whole system on one machine without Docker: ``make up`` / ``make down``.

Starts real Apache Kafka and PostgreSQL, applies the migrations, creates the topics, starts the
OpenAI simulator when no OPENAI_API_KEY is set, every service as its own process (logs in
``.run/logs/``), and nginx as the one public base URL when it is installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from gen_devstack import kafka_local, pg_local
from gen_devstack.ports import wait_for_port

REPO = Path(__file__).resolve().parents[3]
RUN = REPO / ".run"
KAFKA_PORT, PG_PORT, SIM_PORT, PROXY_PORT = 19092, 55432, 18080, 8080
PORTS = {"ingest": 8001, "status": 8002, "notifier": 8004}
SERVICES = ("ingest", "status", "vision", "translate", "notifier")
DEV_KEY = "dev-secret-key-for-testing-2024"


def _env(simulated: bool, db_url: str) -> dict[str, str]:
    key = os.environ.get("GEN_SHARED_KEY", DEV_KEY)
    env = {k: v for k, v in os.environ.items() if "__" not in k}
    env.update(
        {
            "ENV": "dev",
            "PYTHONUNBUFFERED": "1",
            "KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{KAFKA_PORT}",
            "DB__URL": db_url,
            "INGEST__SHARED_KEY": key,
            "STATUS__SHARED_KEY": key,
            "NOTIFIER__SHARED_KEY": key,
            "INGEST__PORT": str(PORTS["ingest"]),
            "STATUS__PORT": str(PORTS["status"]),
            "NOTIFIER__HTTP_PORT": str(PORTS["notifier"]),
            "VISION__METRICS_PORT": "8003",
            "TRANSLATE__METRICS_PORT": "8005",
        }
    )
    if simulated:
        env.update(
            {
                "OPENAI__BASE_URL": f"http://127.0.0.1:{SIM_PORT}/v1",
                "OPENAI__API_KEY": "sk-local-simulator",
                "OPENAI__SIMULATED": "true",
                # Demo images and webhooks live on loopback in the simulated stack.
                "VISION__IMAGES__SSRF__ALLOW_CIDRS": '["127.0.0.0/8"]',
                "NOTIFIER__SSRF__ALLOW_CIDRS": '["127.0.0.0/8"]',
            }
        )
    else:
        env["OPENAI__API_KEY"] = os.environ["OPENAI_API_KEY"]
    return env


def _spawn(name: str, argv: list[str], env: dict[str, str]) -> int:
    (RUN / "logs").mkdir(parents=True, exist_ok=True)
    (RUN / "pids").mkdir(parents=True, exist_ok=True)
    with (RUN / "logs" / f"{name}.log").open("ab") as log:
        proc = subprocess.Popen(
            argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    (RUN / "pids" / f"{name}.pid").write_text(str(proc.pid))
    return proc.pid


def _alive(name: str) -> bool:
    pid_file = RUN / "pids" / f"{name}.pid"
    if not pid_file.exists():
        return False
    try:
        os.kill(int(pid_file.read_text()), 0)
    except (ProcessLookupError, ValueError):
        return False
    return True


def _wait_http(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:  # noqa: S310 - loopback only
                if answer.status < 500:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer; see .run/logs/")
        time.sleep(0.2)


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def up() -> None:
    simulated = not os.environ.get("OPENAI_API_KEY")
    pg = pg_local.Cluster(RUN / "pg", port=PG_PORT)
    env = _env(simulated, pg.local_url)
    kafka = kafka_local.Cluster(RUN / "kafka", nodes=1, first_port=KAFKA_PORT)
    if not _alive("kafka"):
        took = kafka.start()
        assert kafka.members[0].process is not None
        (RUN / "pids" / "kafka.pid").parent.mkdir(parents=True, exist_ok=True)
        (RUN / "pids" / "kafka.pid").write_text(str(kafka.members[0].process.pid))
        _say(f"Apache Kafka ready on 127.0.0.1:{KAFKA_PORT} in {took:.1f}s")
    took = pg.start()
    _say(f"PostgreSQL ready at {pg.local_url} in {took:.1f}s")
    subprocess.run([sys.executable, "-m", "gen_common.migrate"], cwd=REPO, env=env, check=True)
    asyncio.run(_topics(env["KAFKA__BOOTSTRAP_SERVERS"]))
    if simulated and not _alive("openai-sim"):
        _spawn("openai-sim", [sys.executable, "-m", "openai_sim", "--port", str(SIM_PORT)], env)
        wait_for_port(SIM_PORT, timeout_s=30)
    for name in SERVICES:
        if not _alive(name):
            _spawn(name, [sys.executable, "-m", f"gen_{name}"], env)
    for port in PORTS.values():
        _wait_http(f"http://127.0.0.1:{port}/health")
    proxy = _start_proxy()
    key_note = "$GEN_SHARED_KEY" if "GEN_SHARED_KEY" in os.environ else DEV_KEY
    banner = (
        "SIMULATED OpenAI (no OPENAI_API_KEY): every description is simulated"
        if simulated
        else "OpenAI: the real API (OPENAI_API_KEY is set)"
    )
    _say(
        "\n".join(
            [
                "",
                "Generation Service is up.",
                f"  {banner}",
                f"  public base URL : {proxy or 'nginx missing; use the service ports below'}",
                f"  ingest          : http://127.0.0.1:{PORTS['ingest']}/docs",
                f"  status          : http://127.0.0.1:{PORTS['status']}/docs",
                f"  notifier        : http://127.0.0.1:{PORTS['notifier']}/api/v1/webhook-health",
                f"  shared key (v1) : {key_note}",
                "  logs            : .run/logs/   (make logs)      stop: make down",
                "",
            ]
        )
    )


async def _topics(bootstrap: str) -> None:
    from gen_common import kafka
    from gen_common.settings import KafkaSettings

    await kafka.ensure_topics(KafkaSettings(bootstrap_servers=bootstrap))


def _start_proxy() -> str | None:
    nginx = "/usr/sbin/nginx"
    if not Path(nginx).exists():
        return None
    conf_dir = RUN / "nginx"
    (conf_dir / "tmp").mkdir(parents=True, exist_ok=True)
    template = (REPO / "deploy" / "nginx" / "gen.conf.template").read_text()
    conf = template.replace("${RUN}", str(conf_dir)).replace("${LISTEN}", f"127.0.0.1:{PROXY_PORT}")
    for name, port in PORTS.items():
        conf = conf.replace(f"${{{name.upper()}}}", f"127.0.0.1:{port}")
    (conf_dir / "nginx.conf").write_text(conf)
    if not (conf_dir / "nginx.pid").exists():
        subprocess.run([nginx, "-c", str(conf_dir / "nginx.conf"), "-p", str(conf_dir)], check=True)
    _wait_http(f"http://127.0.0.1:{PROXY_PORT}/health")
    return f"http://127.0.0.1:{PROXY_PORT}"


def down() -> None:
    nginx_pid = RUN / "nginx" / "nginx.pid"  # nginx daemonizes and writes its own pid file
    if nginx_pid.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(nginx_pid.read_text().strip()), signal.SIGTERM)
        _say("stopped nginx")
    for name in [*SERVICES, "openai-sim", "kafka"]:
        pid_file = RUN / "pids" / f"{name}.pid"
        if not pid_file.exists():
            continue
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
        pid_file.unlink()
        _say(f"stopped {name}")
    pg_local.Cluster(RUN / "pg", port=PG_PORT).stop()
    _say("stopped postgresql")


def status() -> None:
    for name in ["kafka", "openai-sim", *SERVICES]:
        _say(f"{name:12} {'running' if _alive(name) else 'stopped'}")


def main(argv: list[str]) -> int:
    actions = {"up": up, "down": down, "status": status}
    if len(argv) != 1 or argv[0] not in actions:
        sys.stderr.write("usage: python -m gen_devstack.stack up|down|status\n")
        return 2
    actions[argv[0]]()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
