"""Real Apache Kafka on loopback without Docker: KRaft nodes as plain ``kafka.Kafka`` JVMs.

The jars come from Maven Central through ``deploy/kafka-local/pom.xml``. One node (combined
broker + controller) serves ordinary runs; three nodes (RF 3, ``min.insync.replicas=2``) serve
broker-fault tests. Each node is one process, so SIGKILL / SIGSTOP / restart are real faults.

    python -m gen_devstack.kafka_local start --dir .run/kafka --port 19092 [--nodes 3]
    python -m gen_devstack.kafka_local stop --dir .run/kafka
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from gen_devstack.ports import free_port, wait_for_port

REPO = Path(__file__).resolve().parents[3]
KAFKA_DIR = REPO / "deploy" / "kafka-local"
STARTED = "Kafka Server started"
LOG4J2 = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = warn
logger.apache.name = org.apache.kafka
logger.apache.level = warn
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = info
logger.broker.name = kafka.server.BrokerServer
logger.broker.level = info
"""


def ensure_jars(kafka_dir: Path = KAFKA_DIR) -> Path:
    """Fetch the broker jars from Maven Central once (cached in deploy/kafka-local/libs)."""
    libs = kafka_dir / "libs"
    if not any(libs.glob("kafka_2.13-*.jar")):
        subprocess.run(
            [
                "mvn",
                "-q",
                "-B",
                "dependency:copy-dependencies",
                "-DoutputDirectory=libs",
                "-DincludeScope=runtime",
            ],
            cwd=kafka_dir,
            check=True,
        )
    return libs


@dataclass
class Node:
    node_id: int
    port: int
    controller_port: int
    home: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.home / "server.log"


@dataclass
class Cluster:
    """``nodes`` KRaft nodes under ``base``; ports are free loopback ports unless given."""

    base: Path
    nodes: int = 1
    first_port: int | None = None
    heap_mb: int = 512
    members: list[Node] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        used: set[int] = set()
        for i in range(1, self.nodes + 1):
            if self.first_port is not None:
                port, cport = self.first_port + 2 * (i - 1), self.first_port + 2 * (i - 1) + 1
            else:
                port, cport = _distinct_free_port(used), _distinct_free_port(used)
            self.members.append(Node(i, port, cport, self.base / f"node-{i}"))

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"127.0.0.1:{n.port}" for n in self.members)

    def _properties(self, node: Node) -> str:
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.members)
        rf, isr = (3, 2) if self.nodes >= 3 else (1, 1)
        return "\n".join(
            [
                "process.roles=broker,controller",
                f"node.id={node.node_id}",
                f"controller.quorum.voters={voters}",
                f"listeners=PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{node.port}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                f"log.dirs={node.home / 'data'}",
                "num.partitions=1",
                f"default.replication.factor={rf}",
                f"min.insync.replicas={isr}",
                f"offsets.topic.replication.factor={rf}",
                "offsets.topic.num.partitions=1",
                f"transaction.state.log.replication.factor={rf}",
                f"transaction.state.log.min.isr={isr}",
                "transaction.state.log.num.partitions=1",
                f"share.coordinator.state.topic.replication.factor={rf}",
                f"share.coordinator.state.topic.min.isr={isr}",
                "group.initial.rebalance.delay.ms=0",
                "auto.create.topics.enable=true",
                "unclean.leader.election.enable=false",
                "replica.lag.time.max.ms=5000",
                "broker.session.timeout.ms=3000",
                "broker.heartbeat.interval.ms=1000",
                "log.flush.interval.messages=9223372036854775807",
                "",
            ]
        )

    def _java(self, *args: str, heap_mb: int) -> list[str]:
        libs = ensure_jars()
        return [
            "java",
            f"-Xms{heap_mb}m",
            f"-Xmx{heap_mb}m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.base / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.base}",
            "-cp",
            f"{libs}/*",
            *args,
        ]

    def format(self) -> None:
        (self.base / "log4j2.properties").write_text(LOG4J2)
        cluster_id = (
            self._existing_cluster_id()
            or base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        )
        for node in self.members:
            node.home.mkdir(parents=True, exist_ok=True)
            (node.home / "server.properties").write_text(self._properties(node))
            subprocess.run(
                self._java(
                    "kafka.tools.StorageTool",
                    "format",
                    f"--cluster-id={cluster_id}",  # "=": an id may start with "-"
                    "-c",
                    str(node.home / "server.properties"),
                    "--ignore-formatted",
                    heap_mb=256,
                ),
                check=True,
                stdout=subprocess.DEVNULL,
            )

    def _existing_cluster_id(self) -> str | None:
        """A restarted stack keeps its data, so it must keep the id its data was formatted with."""
        for node in self.members:
            meta = node.home / "data" / "meta.properties"
            if meta.exists():
                for line in meta.read_text().splitlines():
                    if line.startswith("cluster.id="):
                        return line.split("=", 1)[1].strip()
        return None

    def start_node(self, node: Node) -> None:
        log = node.log_path.open("ab")
        node.process = subprocess.Popen(
            self._java("kafka.Kafka", str(node.home / "server.properties"), heap_mb=self.heap_mb),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def start(self, *, timeout_s: float = 90.0) -> float:
        """Format, start every node and wait until all are ready; returns seconds taken."""
        began = time.monotonic()
        self.format()
        offsets = {n.node_id: _size(n.log_path) for n in self.members}
        for node in self.members:
            self.start_node(node)
        for node in self.members:
            self.wait_ready(node, since=offsets[node.node_id], timeout_s=timeout_s)
        return time.monotonic() - began

    def wait_ready(self, node: Node, *, since: int = 0, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            if node.process is not None and node.process.poll() is not None:
                raise RuntimeError(f"Kafka node {node.node_id} exited; see {node.log_path}")
            with node.log_path.open("rb") as f:
                f.seek(since)
                if STARTED.encode() in f.read():
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"Kafka node {node.node_id} not ready; see {node.log_path}")
            time.sleep(0.1)
        wait_for_port(node.port, timeout_s=max(1.0, deadline - time.monotonic()))

    def signal(self, node: Node, sig: signal.Signals) -> None:
        if node.process is not None and node.process.poll() is None:
            node.process.send_signal(sig)

    def kill(self, node: Node) -> None:
        """SIGKILL: a crash."""
        self.signal(node, signal.SIGKILL)
        if node.process is not None:
            node.process.wait()

    def restart(self, node: Node, *, timeout_s: float = 90.0) -> None:
        since = _size(node.log_path)
        self.start_node(node)
        self.wait_ready(node, since=since, timeout_s=timeout_s)

    def stop(self, *, timeout_s: float = 20.0) -> None:
        for node in self.members:
            self.signal(node, signal.SIGCONT)
            self.signal(node, signal.SIGTERM)
        for node in self.members:
            if node.process is None:
                continue
            try:
                node.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait()


def _distinct_free_port(used: set[int]) -> int:
    """A free port not handed out before (two free_port() calls can return the same one)."""
    while (port := free_port()) in used:
        pass
    used.add(port)
    return port


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="kafka_local")
    parser.add_argument("action", choices=["start", "stop", "fetch"])
    parser.add_argument("--dir", type=Path, default=REPO / ".run" / "kafka")
    parser.add_argument("--port", type=int, default=19092)
    parser.add_argument("--nodes", type=int, default=1, choices=[1, 3])
    parser.add_argument("--heap-mb", type=int, default=1024)
    args = parser.parse_args(argv)
    if args.action == "fetch":
        print(ensure_jars())  # noqa: T201
        return 0
    pids = args.dir / "pids"
    if args.action == "stop":
        for line in pids.read_text().split() if pids.exists() else []:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(line), signal.SIGTERM)
        pids.unlink(missing_ok=True)
        return 0
    cluster = Cluster(args.dir, nodes=args.nodes, first_port=args.port, heap_mb=args.heap_mb)
    took = cluster.start()
    pids.write_text(" ".join(str(n.process.pid) for n in cluster.members if n.process))
    print(f"Apache Kafka ready on {cluster.bootstrap_servers} in {took:.1f}s")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(_cli(sys.argv[1:]))
