#!/usr/bin/env bash
# A quick look at cyclehttp's throughput: examples/hello.py on core 0, wrk on core 1.
# Usage: benchmarks/quick.sh [seconds]   (needs wrk: apt-get install -y wrk)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-5}"
PORT="${PORT:-18080}"
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 2; }
taskset -c 0 python -m cyclehttp examples.hello:routes --port "$PORT" --log-level warning &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$PORT/" >/dev/null && break; sleep 0.1; done
cpu() { awk '{print $14 + $15}' "/proc/$SERVER/stat"; }
run() {
  local name="$1"; shift
  local before after out reqs
  before=$(cpu)
  out=$(taskset -c 1 wrk -t1 -c64 -d"${DURATION}s" "$@")
  after=$(cpu)
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  printf '%-22s %12s req/s  server CPU %6.1f us/req\n' "$name" \
    "$(awk '/Requests\/sec/ {print $2}' <<<"$out")" \
    "$(awk -v t=$((after - before)) -v r="$reqs" -v hz="$(getconf CLK_TCK)" 'BEGIN {print t / hz / r * 1e6}')"
}
run "GET / keep-alive" "http://127.0.0.1:$PORT/"
run "GET / close" -s benchmarks/close.lua "http://127.0.0.1:$PORT/"
run "GET / pipelined x16" -s benchmarks/pipeline.lua "http://127.0.0.1:$PORT/"
run "GET /users/1 keep-alive" "http://127.0.0.1:$PORT/users/1"
