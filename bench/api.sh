#!/usr/bin/env bash
# Loads the API on loopback with wrk and prints requests/s, p99 latency and
# the server's RSS afterwards. Reads and durable writes, 64 connections.
#
#   bench/api.sh [DURATION]      (default 10s; needs wrk: apt-get install wrk)
#   ROUNDS=N bench/api.sh ...    (list-read rounds against the yardstick; default 3)
#
# The list read is also measured against a yardstick: the same read written
# as a bare poem handler (services/api/examples/bare.rs: same JSON, same
# basic-auth check, nothing else), loaded alternately with the API in the
# same run, and their ratio printed. API_BIN=path benchmarks another build
# of the api binary (say, the previous commit's) against the same yardstick.
# Each list run also prints the server's CPU time per request (user+system,
# all its threads, from /proc): unlike requests/s it hardly moves when other
# work shares the machine.
#
# Compare figures within one run: the machines are shared and noisy.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10s}
command -v wrk >/dev/null || { echo "bench/api.sh: needs wrk (apt-get install wrk)" >&2; exit 1; }

cargo build --release -q -p student-ages-api --bin api --example bare
api_bin=${API_BIN:-target/release/api}
work=$(mktemp -d)
pid=""; bare_pid=""
trap 'kill $pid $bare_pid 2>/dev/null || true; wait $pid $bare_pid 2>/dev/null || true; rm -rf "$work"' EXIT
cp data/student_age.json "$work/student_age.json"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
bare_port=$(free_port)

export API_USERNAME=root API_PASSWORD=root STUDENT_AGE_FILE="$work/student_age.json"
LISTEN_ADDR="127.0.0.1:$port" RUST_LOG=${RUST_LOG:-info} "$api_bin" >"$work/api.log" 2>&1 &
pid=$!
LISTEN_ADDR="127.0.0.1:$bare_port" target/release/examples/bare >"$work/bare.log" 2>&1 &
bare_pid=$!
auth="Authorization: Basic $(printf root:root | base64)"
list_path=/supmit/api/v1.0/get_student_ages
for _ in $(seq 50); do
    curl -sf "http://127.0.0.1:$port/healthz" >/dev/null \
        && curl -sf -H "$auth" "http://127.0.0.1:$bare_port$list_path" >/dev/null && break
    sleep 0.1
done
# The yardstick must answer exactly what the API answers, or the ratio means nothing.
[[ $(curl -sf -H "$auth" "http://127.0.0.1:$port$list_path") == $(curl -sf -H "$auth" "http://127.0.0.1:$bare_port$list_path") ]] \
    || { echo "bench/api.sh: the bare handler's list differs from the API's" >&2; exit 1; }

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

report() { # name, wrk output (with or without a cpu_us line)
    local rps p99 non2xx cpu
    rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$2")
    p99=$(awk '$1=="99%" {print $2}' <<<"$2")
    non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$2")
    cpu=$(awk '$1 == "cpu_us" {printf "   CPU %5.1f us/request", $2}' <<<"$2")
    printf '%-28s %12s req/s   p99 %8s   non-2xx %s%s\n' "$1" "$rps" "$p99" "${non2xx:-0}" "$cpu"
}

rps() { awk '/^Requests\/sec/ {print $2}' <<<"$1"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# Runs wrk on a URL and prints its output plus a "cpu_us" line: the
# server's (pid $1) CPU time per request during the run.
wrk_cpu() {
    local before after out
    before=$(cpu_ticks "$1")
    out=$(wrk -t2 -c64 -d"$duration" --latency -H "$auth" "$2")
    after=$(cpu_ticks "$1")
    printf '%s\n' "$out"
    awk -v a="$before" -v b="$after" -v t="$(getconf CLK_TCK)" \
        '/requests in/ {printf "cpu_us %.1f\n", (b - a) / t * 1e6 / $1}' <<<"$out"
}
cpu_us() { awk '$1 == "cpu_us" {print $2}' <<<"$1"; }

echo "api benchmark ($api_bin): 64 connections, 2 wrk threads, $duration each, RUST_LOG=${RUST_LOG:-info}"
# Alternate API and yardstick, so a change in the machine's load during the
# run hits both sides.
rounds=${ROUNDS:-3}
api_sum=0; bare_sum=0; api_cpu=0; bare_cpu=0
for round in $(seq "$rounds"); do
    list=$(wrk_cpu "$pid" "http://127.0.0.1:$port$list_path")
    report "read: list all ($round)" "$list"
    bare=$(wrk_cpu "$bare_pid" "http://127.0.0.1:$bare_port$list_path")
    report "bare poem handler ($round)" "$bare"
    api_sum=$(awk -v a="$api_sum" -v b="$(rps "$list")" 'BEGIN {print a + b}')
    bare_sum=$(awk -v a="$bare_sum" -v b="$(rps "$bare")" 'BEGIN {print a + b}')
    api_cpu=$(awk -v a="$api_cpu" -v b="$(cpu_us "$list")" 'BEGIN {print a + b}')
    bare_cpu=$(awk -v a="$bare_cpu" -v b="$(cpu_us "$bare")" 'BEGIN {print a + b}')
done
awk -v a="$api_sum" -v b="$bare_sum" -v ac="$api_cpu" -v bc="$bare_cpu" -v n="$rounds" 'BEGIN {
    printf "list read vs bare poem handler: %.0f %% of its requests/s; CPU per request %.1f us vs %.1f us\n",
        100 * a / b, ac / n, bc / n }'
kill "$bare_pid"; wait "$bare_pid" 2>/dev/null || true; bare_pid=""
one=$(wrk -t2 -c64 -d"$duration" --latency -H "$auth" "http://127.0.0.1:$port/supmit/api/v1.0/get_student_ages/alice")
report "read: one student" "$one"
rss_reads=$(awk '/VmRSS/ {print $2, $3}' /proc/$pid/status)
writes=$(wrk -t2 -c64 -d"$duration" --latency -H "$auth" -s "$work/put.lua" "http://127.0.0.1:$port")
report "write: durable PUT" "$writes"
students=$(python3 -c "import json,sys; print(len(json.load(open('$work/student_age.json'))))")
echo "students on disk after the write run: $students"
echo "api RSS after the read runs: $rss_reads"
echo "api RSS after all runs: $(awk '/VmRSS/ {print $2, $3}' /proc/$pid/status)"
