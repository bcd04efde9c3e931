#!/usr/bin/env bash
# Installs everything the project needs on a Debian machine without Docker:
# uv and the Python packages (one lock), PostgreSQL's binaries, Java + Maven, the Kafka jars.
# Safe to run again; each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=no
apt_install() {
  if [ "$apt_updated" = no ]; then as_root apt-get update -qq; apt_updated=yes; fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "$@"
}

if ! command -v uv >/dev/null 2>&1; then
  echo "[bootstrap] installing uv from PyPI"
  python3 -m pip install --quiet uv || python3 -m pip install --quiet --user uv
  export PATH="$HOME/.local/bin:$PATH"
fi

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
  echo "[bootstrap] installing PostgreSQL from Debian"
  apt_install postgresql
fi

if ! command -v java >/dev/null 2>&1 || ! command -v mvn >/dev/null 2>&1; then
  echo "[bootstrap] installing Java 17 and Maven from Debian"
  apt_install openjdk-17-jre-headless maven
fi

if [ "${WITH_PROXY:-no}" = yes ] && ! command -v nginx >/dev/null 2>&1; then
  echo "[bootstrap] installing nginx (the local stack's reverse proxy)"
  apt_install nginx-light
fi

if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null 2>&1; then
  echo "[bootstrap] installing docker-compose (validates docker-compose.yml; no engine needed)"
  apt_install docker-compose
fi

echo "[bootstrap] syncing the Python workspace"
uv sync --all-packages --frozen --quiet

echo "[bootstrap] fetching Apache Kafka jars from Maven Central (cached)"
uv run --frozen python -m gen_devstack.kafka_local fetch >/dev/null
ls deploy/kafka-local/libs/kafka_2.13-*.jar
