#!/usr/bin/env bash
# Installs the system packages the tests need, if missing: Chromium for the
# browser tests, PostgreSQL for the PostgreSQL store's tests, Redis for the
# cluster tests. Node 20 and npm, and Rust, come with the machine. Leaves
# PostgreSQL running on 127.0.0.1:5432 with a database `test` that user
# postgres reaches without a password (the tests' default;
# SYNC_TEST_DATABASE_URL overrides it) and Redis on 127.0.0.1:6379
# (SYNC_TEST_REDIS_URL overrides it).
set -euo pipefail

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v node >/dev/null 2>&1 || need+=(nodejs npm)
fresh_postgres=""
if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
  need+=(postgresql)
  fresh_postgres=1
fi

command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v slapd >/dev/null 2>&1 || [ -x /usr/sbin/slapd ] || need+=(slapd)
command -v ldapadd >/dev/null 2>&1 || need+=(ldap-utils)
command -v openssl >/dev/null 2>&1 || need+=(openssl)

if ((${#need[@]})); then
  echo "installing: ${need[*]}"
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
fi
echo "chromium: $(chromium --version 2>/dev/null || echo missing)"
echo "node: $(node --version)  npm: $(npm --version)"

# PostgreSQL: the newest installed cluster version, its cluster `main`.
pg_version="$(ls /etc/postgresql | sort -V | tail -n 1)"
pg_hba="/etc/postgresql/$pg_version/main/pg_hba.conf"

if [ -n "$fresh_postgres" ]; then
  # A cluster installed just now, for tests only: let local connections in
  # without a password, as the tests expect.
  echo "postgresql: trusting local connections to the new cluster"
  $SUDO sed -i -E 's/^(local|host)(\s+all\s+all\s+.*\s)(peer|md5|scram-sha-256)\s*$/\1\2trust/' "$pg_hba"
  $SUDO sed -i -E 's/^(local\s+all\s+postgres\s+)peer\s*$/\1trust/' "$pg_hba"
fi

if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  echo "postgresql: starting cluster $pg_version/main"
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$pg_version" main start || true
fi
for _ in $(seq 1 30); do
  pg_isready -q -h 127.0.0.1 -p 5432 && break
  sleep 1
done
if ! pg_isready -h 127.0.0.1 -p 5432; then
  echo "postgresql: not answering on 127.0.0.1:5432 after 30 s" >&2
  exit 1
fi
if [ -n "$fresh_postgres" ]; then
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$pg_version" main reload
fi

if ! psql -h 127.0.0.1 -U postgres -d postgres -Atqc 'SELECT 1' >/dev/null 2>&1; then
  echo "postgresql: user postgres cannot log in on 127.0.0.1 without a password;" >&2
  echo "  allow it in $pg_hba (host all all 127.0.0.1/32 trust) or set SYNC_TEST_DATABASE_URL" >&2
  exit 1
fi
if [ "$(psql -h 127.0.0.1 -U postgres -d postgres -Atqc "SELECT count(*) FROM pg_database WHERE datname = 'test'")" = 0 ]; then
  echo "postgresql: creating database test"
  psql -h 127.0.0.1 -U postgres -d postgres -qc 'CREATE DATABASE test'
fi
echo "postgresql: $(psql -h 127.0.0.1 -U postgres -d test -Atqc 'SHOW server_version') on 127.0.0.1:5432"

# Redis: started in memory only (it keeps nothing on disk), as on CI.
redis_up() { (exec 3<>/dev/tcp/127.0.0.1/6379 && printf 'PING\r\n' >&3 && read -r -t 2 reply <&3 && [[ "$reply" == +PONG* ]]) 2>/dev/null; }
if ! redis_up; then
  echo "redis: starting on 127.0.0.1:6379"
  mkdir -p /tmp/redis-tests
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /tmp/redis-tests --logfile /tmp/redis-tests/redis.log
  for _ in $(seq 1 30); do
    redis_up && break
    sleep 0.5
  done
fi
if ! redis_up; then
  echo "redis: not answering on 127.0.0.1:6379" >&2
  exit 1
fi
echo "redis: $(redis-server --version | awk '{print $3}') on 127.0.0.1:6379"
