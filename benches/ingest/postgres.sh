#!/bin/bash
# Ingest with several collectors on one PostgreSQL database, all on this
# machine: a throwaway cluster (durable: fsync and synchronous_commit on),
# COLLECTORS collector processes on it, and `hush collector loadgen` sending
# REPORTS reports across them. Prints loadgen's reports/s and the collectors'
# CPU per report, and PostgreSQL's CPU per report (its processes' /proc
# times over the run, the load generator's minting included). ROUNDS runs.
#
#   benches/ingest/postgres.sh                     # 2 collectors, concurrency 64
#   COLLECTORS=1 CONCURRENCY=8 benches/ingest/postgres.sh
#
# Needs Debian's postgresql (HUSH_PG_BINDIR overrides where its programs are).
# Run as root, the server runs as the postgres user.
set -euo pipefail
HUSH=${HUSH:-$(pwd)/target/release/hush}
BIN=${HUSH_PG_BINDIR:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}
REPORTS=${REPORTS:-100000}
CONCURRENCY=${CONCURRENCY:-64}
COLLECTORS=${COLLECTORS:-2}
ROUNDS=${ROUNDS:-3}
as_pg=()
[ "$(id -u)" = 0 ] && as_pg=(runuser -u postgres --)
ticks=$(getconf CLK_TCK)

pg_cpu() { # CPU ticks of the cluster's processes
  local total=0 pid t
  for pid in $(pgrep -f "postgres: |$BIN/postgres" || true); do
    t=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)
    total=$((total + t))
  done
  echo "$total"
}

for round in $(seq "$ROUNDS"); do
  work=$(mktemp -d)
  chmod 711 "$work"
  mkdir "$work/data" "$work/sock"
  [ "$(id -u)" = 0 ] && chown postgres: "$work/data" "$work/sock"
  "${as_pg[@]}" "$BIN/initdb" -D "$work/data" -U hush --auth=trust -E UTF8 --locale=C >/dev/null
  "${as_pg[@]}" "$BIN/pg_ctl" -D "$work/data" -l "$work/sock/log" -w \
    -o "-k $work/sock -c listen_addresses='' -c shared_buffers=256MB -c max_wal_size=4GB" start >/dev/null
  "${as_pg[@]}" "$BIN/psql" -h "$work/sock" -U hush -d postgres -qc "CREATE DATABASE hush"
  url="postgres://hush@${work//\//%2F}%2Fsock:5432/hush"
  urls=()
  pids=()
  for i in $(seq "$COLLECTORS"); do
    printf 'listen = "127.0.0.1:0"\ndatabase = "%s"\n' "$url" >"$work/c$i.toml"
    "$HUSH" collector serve --config "$work/c$i.toml" >"$work/s$i.out" 2>"$work/s$i.err" &
    pids+=($!)
  done
  for i in $(seq "$COLLECTORS"); do
    for _ in $(seq 100); do
      [ -s "$work/s$i.out" ] && break
      sleep 0.1
    done
    urls+=(--url "$(awk '{print $3; exit}' "$work/s$i.out")")
  done
  before=$(pg_cpu)
  "$HUSH" collector loadgen --config "$work/c1.toml" "${urls[@]}" \
    --reports "$REPORTS" --concurrency "$CONCURRENCY" | tail -2
  after=$(pg_cpu)
  awk -v t=$((after - before)) -v hz="$ticks" -v n="$REPORTS" \
    'BEGIN { printf "postgres CPU %.2f s: %.1f µs per report\n", t / hz, t / hz * 1e6 / n }'
  kill "${pids[@]}"
  wait "${pids[@]}" 2>/dev/null || true
  "${as_pg[@]}" "$BIN/pg_ctl" -D "$work/data" -m fast stop >/dev/null
  rm -rf "$work"
done
