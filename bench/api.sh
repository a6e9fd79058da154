#!/usr/bin/env bash
# Loads the API on loopback with wrk and prints requests/s, p99 latency and
# the server's RSS afterwards. Reads and durable writes, 64 connections.
#
#   bench/api.sh [DURATION]      (default 10s; needs wrk: apt-get install wrk)
#
# Compare figures within one run: the machines are shared and noisy.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10s}
command -v wrk >/dev/null || { echo "bench/api.sh: needs wrk (apt-get install wrk)" >&2; exit 1; }

cargo build --release -q -p student-ages-api --bin api
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
cp data/student_age.json "$work/student_age.json"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

API_USERNAME=root API_PASSWORD=root STUDENT_AGE_FILE="$work/student_age.json" \
LISTEN_ADDR="127.0.0.1:$port" RUST_LOG=${RUST_LOG:-info} \
    target/release/api >"$work/api.log" 2>&1 &
pid=$!
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done

auth="Authorization: Basic $(printf root:root | base64)"
cat >"$work/put.lua" <<'LUA'
-- Each wrk thread cycles over its own 500 students, changing an age on
-- every request, so every PUT is a real durable write of a ~1,000-student file.
local counter = 0
local thread_id = 0
setup = function(thread) thread:set("id", thread_id); thread_id = thread_id + 1 end
request = function()
  counter = counter + 1
  return wrk.format("PUT", "/supmit/api/v1.0/student_ages/w" .. id .. "-" .. (counter % 500),
    {["Content-Type"] = "application/json", ["Authorization"] = wrk.headers["Authorization"]},
    '{"age": ' .. (math.floor(counter / 500) % 150) .. '}')
end
LUA

report() { # name, wrk output
    local rps p99 non2xx
    rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$2")
    p99=$(awk '$1=="99%" {print $2}' <<<"$2")
    non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$2")
    printf '%-28s %12s req/s   p99 %8s   non-2xx %s\n' "$1" "$rps" "$p99" "${non2xx:-0}"
}

echo "api benchmark: 64 connections, 2 wrk threads, $duration each, RUST_LOG=${RUST_LOG:-info}"
list=$(wrk -t2 -c64 -d"$duration" --latency -H "$auth" "http://127.0.0.1:$port/supmit/api/v1.0/get_student_ages")
report "read: list all" "$list"
one=$(wrk -t2 -c64 -d"$duration" --latency -H "$auth" "http://127.0.0.1:$port/supmit/api/v1.0/get_student_ages/alice")
report "read: one student" "$one"
rss_reads=$(awk '/VmRSS/ {print $2, $3}' /proc/$pid/status)
writes=$(wrk -t2 -c64 -d"$duration" --latency -H "$auth" -s "$work/put.lua" "http://127.0.0.1:$port")
report "write: durable PUT" "$writes"
students=$(python3 -c "import json,sys; print(len(json.load(open('$work/student_age.json'))))")
echo "students on disk after the write run: $students"
echo "api RSS after the read runs: $rss_reads"
echo "api RSS after all runs: $(awk '/VmRSS/ {print $2, $3}' /proc/$pid/status)"
