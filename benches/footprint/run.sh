#!/usr/bin/env bash
# Measures `hush-agent run` (the agent-only binary the service files start) the
# way a laptop would feel it: CPU and memory while
# someone types, and at rest. Starts a loopback collector and an Xvfb display in a
# scratch directory, enrolls an agent with default settings, types with xdotool at
# about 25 characters a second (about 50 X events a second: presses and releases)
# for SECS seconds, then idles for 20 s, sampling /proc throughout.
#
# Not part of CI. Needs Xvfb, xdotool and bc (the packages .ci/run installs).
# Usage: benches/footprint/run.sh [SECS]   (default 30; AGENT="path/to/hush agent"
# measures another build or the full binary, for before-and-after comparisons)
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-30}
cargo build --release --quiet
bin=$PWD/target/release/hush
# The agent command: the agent-only binary unless AGENT names another.
read -r -a agent_cmd <<< "${AGENT:-$PWD/target/release/hush-agent}"
agent_bin=$(realpath "${agent_cmd[0]}")
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
cd "$work"

port=$((20000 + RANDOM % 20000))
"$bin" collector config > collector.toml
sed -i "s/^listen = .*/listen = \"127.0.0.1:$port\"/" collector.toml
token=$("$bin" collector token create --config collector.toml 2> /dev/null | tail -1)
"$bin" collector serve --config collector.toml > collector.log 2>&1 &
pids+=($!)
sleep 1
"$bin" agent enroll --yes --collector "http://127.0.0.1:$port" --token "$token" --home home > /dev/null

Xvfb -displayfd 3 -noreset -nolisten tcp 3> display.txt > /dev/null 2>&1 &
pids+=($!)
for _ in $(seq 50); do [ -s display.txt ] && break; sleep 0.1; done
export DISPLAY=":$(cat display.txt)"
"$agent_bin" "${agent_cmd[@]:1}" run --home home > agent.log 2>&1 &
agent=$!
pids+=($agent)
sleep 3

# CPU time in nanoseconds, summed over the agent's threads: schedstat's first
# field is exact, where /proc/PID/stat counts 10 ms clock ticks.
cpu_ns() { cat /proc/"$agent"/task/*/schedstat | awk '{s += $1} END {printf "%d", s}'; }
percent() { printf "%.3f" "$(echo "scale=6; 100 * ($2 - $1) / 1000000000 / $3" | bc)"; }

t0=$(cpu_ns); s0=$(date +%s.%N)
end=$(($(date +%s) + secs))
while [ "$(date +%s)" -lt "$end" ]; do
    xdotool type --delay 40 "the quick brown fox jumps over the lazy dog "
done
t1=$(cpu_ns); s1=$(date +%s.%N)
typing=$(percent "$t0" "$t1" "$(echo "$s1 - $s0" | bc)")
rollup() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$agent/smaps_rollup"; }
rss=$(rollup Rss); pss=$(rollup Pss)
private=$(($(rollup Private_Clean) + $(rollup Private_Dirty)))
binary=$(awk -v b="$agent_bin" '/^[0-9a-f]+-[0-9a-f]+ / {name = $6} /^Rss:/ && name == b {s += $2} END {print s + 0}' "/proc/$agent/smaps")
sleep 5
t2=$(cpu_ns); sleep 20; t3=$(cpu_ns)
idle=$(percent "$t2" "$t3" 20)

echo "${agent_cmd[*]##*/} run, default settings, ${secs} s of typing at about 50 X events/s, then 20 s idle"
echo "  CPU while typing   ${typing}% of one core"
echo "  CPU idle           ${idle}% of one core"
mib() { printf "%.1f MiB" "$(echo "scale=2; $1 / 1024" | bc)"; }
echo "  RSS                $(mib "$rss") (of which pages of the binary: $(mib "$binary"))"
echo "  private            $(mib "$private")"
echo "  PSS                $(mib "$pss")"
