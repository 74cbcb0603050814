#!/bin/bash
# Instructions the collector executes per ingested report, for one or more
# hush builds: a figure that does not depend on the machine's speed of the
# moment. Collector CPU time per report (benches/ingest/run.sh) swings by
# 15% or more between runs of one build on a shared 2-core machine, which
# hides any change smaller than that; this count repeats to within 1%.
#
# Each build serves a fresh database under valgrind's callgrind, and its own
# loadgen sends the same seeded reports (8,000 by default, 8 at a time);
# the count covers the collector's user space from the first upload to the
# last (not the kernel: system calls, file and socket work are not in it).
# Needs valgrind (Debian: apt-get install valgrind); about a minute a build.
#
#   benches/ingest/instructions.sh path/to/old/hush target/release/hush
set -euo pipefail
. "$(dirname "$0")/common.sh"
[ $# -ge 1 ] || { echo "usage: $0 HUSH [HUSH...]" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 2; }
REPORTS=${REPORTS:-8000}
PORT=${PORT:-8601}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for hush in "$@"; do
  rm -rf "${work:?}"/*
  write_config "$hush" "$work" "$PORT"
  valgrind --tool=callgrind --callgrind-out-file="$work/cg.%p" \
    "$hush" collector serve --config "$work/c.toml" >"$work/serve.log" 2>&1 &
  pid=$!
  wait_healthy "$PORT" 600
  # Counted from here: start-up and the schema's creation are left out.
  callgrind_control -z "$pid" >/dev/null 2>&1
  "$hush" collector loadgen --config "$work/c.toml" --url "http://127.0.0.1:$PORT" \
    --reports "$REPORTS" --concurrency 8 --seed 7 >"$work/loadgen.log"
  callgrind_control -d "$pid" >/dev/null 2>&1
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  # The dump taken just now is the first numbered one.
  total=$(awk '/^summary:/ {print $2}' "$work"/cg.*.1)
  echo "$hush: $((total / REPORTS)) instructions per report ($REPORTS reports)"
done
