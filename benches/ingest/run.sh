#!/bin/bash
# Ingest cost of two collector builds, measured alternately in one session so
# the machine's speed and load cancel out: three rounds of the README's
# loadgen line against a fresh database, each printing reports/s and the
# collector's CPU per report (read by loadgen from /proc). Each build's
# server is loaded by its own loadgen, or by LOADGEN's for both: loadgen
# enrolls its devices in the database itself, so it must know the server's
# schema or a later one (it upgrades an older file in place, under the
# running server, which stores on regardless); and only a loadgen since
# f002711 prints the CPU figure and sends the devices in random order.
#
#   OLD=path/to/old/hush benches/ingest/run.sh   # NEW defaults to target/release/hush
#   LOADGEN=target/release/hush OLD=... benches/ingest/run.sh   # one loadgen for both
set -euo pipefail
. "$(dirname "$0")/common.sh"
NEW=${NEW:-$(pwd)/target/release/hush}
OLD=${OLD:?set OLD to the hush binary to compare against}
ROUNDS=${ROUNDS:-3}
PORT=${PORT:-8600}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
write_config "$NEW" "$work" "$PORT"
for round in $(seq "$ROUNDS"); do
  for which in old new; do
    server=$NEW
    [ "$which" = old ] && server=$OLD
    rm -f "$work"/c.sqlite*
    "$server" collector serve --config "$work/c.toml" >"$work/serve.log" 2>&1 &
    pid=$!
    wait_healthy "$PORT" 50
    "${LOADGEN:-$server}" collector loadgen --config "$work/c.toml" --url "http://127.0.0.1:$PORT" \
      --reports 100000 --concurrency 8 --json >"$work/out.json"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    python3 -c "
import json, sys
r = json.load(open('$work/out.json'))
print(f\"round $round $which: {r['reports_per_second']:.0f} reports/s, {r['collector_cpu_seconds_per_1000_reports'] * 1000:.1f} µs of collector CPU per report\")"
  done
done
