#!/usr/bin/env bash
# API reads (GET /supmit/api/v1.0/get_student_ages, basic auth, 64
# connections, wrk) against the API directly, through the edge, and through
# Debian's HAProxy (`http-reuse always`) in front of the same API, in one
# run; prints requests/s, p99 and the edge's figures relative to HAProxy's.
#
#   bench/edge.sh [DURATION] [ROUNDS]   (default 5s x 3 rounds; needs wrk
#                                        and haproxy: apt-get install wrk haproxy)
#
# The load generator shares the machine's cores with the servers: compare
# the ratios within one run, not absolute figures across runs. Each round
# loads the three in turn; the medians over the rounds are compared, so a
# burst of load from elsewhere on the machine skews one sample, not the result.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-5s}
rounds=${2:-3}
for tool in wrk haproxy curl python3; do
    command -v "$tool" >/dev/null || { echo "bench/edge.sh: needs $tool (apt-get install $tool)" >&2; exit 1; }
done

cargo build --release -q -p student-ages-api --bin api -p student-ages-edge --bin edge
# The binaries just built, wherever cargo puts them (CARGO_TARGET_DIR).
bin=${CARGO_TARGET_DIR:-target}/release
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 100); do curl -sf "$1" >/dev/null && return 0; sleep 0.1; done; echo "bench/edge.sh: $1 never answered" >&2; exit 1; }
cp data/student_age.json "$work/student_age.json"
api_port=$(free_port); edge_port=$(free_port); haproxy_port=$(free_port)

API_USERNAME=root API_PASSWORD=root STUDENT_AGE_FILE="$work/student_age.json" \
LISTEN_ADDR="127.0.0.1:$api_port" RUST_LOG=${RUST_LOG:-info} \
    "$bin"/api >"$work/api.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$api_port/healthz"

EDGE_LISTEN="api=http://127.0.0.1:$edge_port -> api" EDGE_RUN_DIR="$work/run" \
EDGE_STATE_DIR="$work/state" RUST_LOG=${EDGE_LOG:-info} \
    "$bin"/edge >"$work/edge.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$edge_port/.edge/healthz"
EDGE_RUN_DIR="$work/run" "$bin"/edge ctl deploy api --target "127.0.0.1:$api_port" >/dev/null

cat >"$work/haproxy.cfg" <<CFG
global
    maxconn 4096
    nbthread 2
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    http-reuse always
frontend edge
    bind 127.0.0.1:$haproxy_port
    default_backend api
backend api
    server api 127.0.0.1:$api_port
CFG
haproxy -f "$work/haproxy.cfg" -db >"$work/haproxy.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$haproxy_port/healthz"

auth="Authorization: Basic $(printf root:root | base64)"
path=/supmit/api/v1.0/get_student_ages
declare -A rps p99
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
declare -A cpu requests
run() { # name, port, pid of the proxy (or ""): one wrk run, its req/s and p99 (ms) appended to the name's lists
    local out r p before=0
    [[ -n $3 ]] && before=$(cpu_ticks "$3")
    out=$(wrk -t2 -c64 -d"$duration" --latency -H "$auth" "http://127.0.0.1:$2$path")
    if [[ -n $3 ]]; then
        cpu[$1]=$(( ${cpu[$1]:-0} + $(cpu_ticks "$3") - before ))
        requests[$1]=$(( ${requests[$1]:-0} + $(awk '/requests in/ {print $1}' <<<"$out") ))
    fi
    r=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
    p=$(ms "$(awk '$1=="99%" {print $2}' <<<"$out")")
    rps[$1]+="$r "
    p99[$1]+="$p "
    local non2xx errors
    non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
    errors=$(awk '/Socket errors/ {print}' <<<"$out")
    printf '  %-20s %10s req/s   p99 %8.2f ms   non-2xx %s %s\n' "$1" "$r" "$p" "${non2xx:-0}" "$errors"
}
ms() { # wrk latency (850.00us, 1.20ms, 1.01s) in ms
    awk -v v="$1" 'BEGIN { n=v+0; if (v ~ /us$/) n/=1000; else if (v ~ /ms$/) n*=1; else if (v ~ /s$/) n*=1000; print n }'
}
median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

echo "edge benchmark: GET $path, 64 connections, 2 wrk threads, $rounds rounds of $duration each"
echo "(API log RUST_LOG=${RUST_LOG:-info}, edge log ${EDGE_LOG:-info}, HAProxy without a log; load average $(cut -d' ' -f1 /proc/loadavg))"
names=("API directly" "through the edge" "through HAProxy")
ports=("$api_port" "$edge_port" "$haproxy_port")
proxies=("" "${pids[1]}" "${pids[2]}")
for ((round = 1; round <= rounds; round++)); do
    echo "round $round"
    for i in 0 1 2; do run "${names[$i]}" "${ports[$i]}" "${proxies[$i]}"; done
done
echo "medians:"
for name in "${names[@]}"; do
    printf '  %-20s %10.0f req/s   p99 %8.2f ms\n' "$name" "$(median "${rps[$name]}")" "$(median "${p99[$name]}")"
done
awk -v e="$(median "${rps[through the edge]}")" -v h="$(median "${rps[through HAProxy]}")" \
    -v ep="$(median "${p99[through the edge]}")" -v hp="$(median "${p99[through HAProxy]}")" 'BEGIN {
    printf "edge / HAProxy: %.0f %% of the requests/s (target >= 90 %%), p99 %.2fx (target <= 1.5x)\n", 100*e/h, ep/hp }'
ticks=$(getconf CLK_TCK)
for name in "through the edge" "through HAProxy"; do
    awk -v c="${cpu[$name]}" -v n="${requests[$name]}" -v t="$ticks" -v name="$name" 'BEGIN {
        printf "CPU of the proxy %s: %.1f us per request\n", name, 1e6 * c / t / n }'
done
echo "edge RSS after the runs: $(awk '/VmRSS/ {print $2, $3}' /proc/"${pids[1]}"/status)"
