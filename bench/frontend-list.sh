#!/usr/bin/env bash
# Times the web UI's list page with wrk, through the frontend (which reads
# the list from a real API, both release builds on loopback), for a class
# of 1,000 and of 10,000 students. Prints, per size and page: the latency
# one client sees (1 connection: p50, p99) and the throughput under load
# (16 connections: requests/s, p99), and the CPU time each request cost
# the frontend and the API (user+system, all threads, from /proc): unlike
# latency and requests/s it hardly moves when other work shares the
# machine. Target: p50 at 1,000 students ≤ 20 ms.
#
#   bench/frontend-list.sh [DURATION]     (default 10s per run; needs wrk)
#
# The page is the signed-in list, sorted by name (the default) and by age
# on a later page; the frontend asks the API for the whole list on every
# request, as it does in production. Compare figures within one run: the
# machines are shared and noisy.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10s}
command -v wrk >/dev/null || { echo "bench/frontend-list.sh: needs wrk (apt-get install wrk)" >&2; exit 1; }

cargo build --release -q -p student-ages-api --bin api -p student-ages-frontend --bin frontend
work=$(mktemp -d)
api_pid=""; ui_pid=""
stop() {
    [[ -n $ui_pid ]] && kill "$ui_pid" 2>/dev/null && wait "$ui_pid" 2>/dev/null
    [[ -n $api_pid ]] && kill "$api_pid" 2>/dev/null && wait "$api_pid" 2>/dev/null
    api_pid=""; ui_pid=""
}
trap 'stop || true; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# A class of N: "Student 1" … "Student N", ages 6 to 17.
class_of() {
    python3 -c 'import json,sys; n=int(sys.argv[1]); print(json.dumps({f"Student {i}": 6 + i % 12 for i in range(1, n + 1)}, indent=2))' "$1"
}

# Signs in through the form as a browser would; prints the session cookie.
sign_in() {
    local base=$1 jar="$work/jar" page token
    page=$(curl -sf -c "$jar" "$base/login")
    token=$(sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p' <<<"$page" | head -1)
    curl -sf -b "$jar" -c "$jar" -o /dev/null --data-urlencode "username=bench" \
        --data-urlencode "password=bench-pw" --data-urlencode "csrf=$token" "$base/login"
    awk '$6 == "sa_session" {print "sa_session=" $7}' "$jar"
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# Runs wrk with these options on a URL and prints its output plus a line
# "cpu_us UI API": each server's CPU time per request, in microseconds.
wrk_cpu() {
    local url=$1; shift
    local ui0 api0 out
    ui0=$(cpu_ticks "$ui_pid"); api0=$(cpu_ticks "$api_pid")
    out=$(wrk "$@" -d"$duration" --latency -H "Cookie: $cookie" "$url")
    echo "$out"
    awk -v u0="$ui0" -v u1="$(cpu_ticks "$ui_pid")" -v a0="$api0" -v a1="$(cpu_ticks "$api_pid")" \
        -v t="$(getconf CLK_TCK)" '/^Requests\/sec/ {rps = $2} /requests in/ {n = $1}
        END {if (n > 0) printf "cpu_us %.0f %.0f\n", (u1 - u0) / t * 1e6 / n, (a1 - a0) / t * 1e6 / n}' <<<"$out"
}

report() { # label, wrk_cpu output
    awk -v label="$1" '
        /^Requests\/sec/ {rps = $2}
        $1 == "50%" {p50 = $2}
        $1 == "99%" {p99 = $2}
        /Non-2xx/ {bad = $5}
        $1 == "cpu_us" {cpu = sprintf("   CPU/request: UI %5d us, API %4d us", $2, $3)}
        END {printf "  %-32s p50 %8s  p99 %8s  %8s req/s%s%s\n", label, p50, p99, rps, cpu, (bad ? "   NON-2xx: " bad : "")}' <<<"$2"
}

echo "frontend list page: wrk through the frontend (release builds), $duration per run; load average now: $(cut -d' ' -f1-3 /proc/loadavg)"
for students in 1000 10000; do
    class_of "$students" >"$work/student_age.json"
    api_port=$(free_port); ui_port=$(free_port)
    API_USERNAME=bench API_PASSWORD=bench-pw STUDENT_AGE_FILE="$work/student_age.json" \
        LISTEN_ADDR="127.0.0.1:$api_port" RUST_LOG=warn target/release/api >"$work/api.log" 2>&1 &
    api_pid=$!
    API_URL="http://127.0.0.1:$api_port" API_USERNAME=bench API_PASSWORD=bench-pw \
        LISTEN_ADDR="127.0.0.1:$ui_port" RUST_LOG=warn target/release/frontend >"$work/ui.log" 2>&1 &
    ui_pid=$!
    base="http://127.0.0.1:$ui_port"
    for _ in $(seq 100); do curl -sf "$base/healthz" >/dev/null && break; sleep 0.1; done
    cookie=$(sign_in "$base")
    [[ -n $cookie ]] || { echo "bench/frontend-list.sh: sign-in failed" >&2; cat "$work/ui.log" >&2; exit 1; }
    size=$(curl -sf -H "Cookie: $cookie" "$base/" | wc -c)
    echo "$students students (page of 100 rows: $((size / 1024)) KiB of HTML)"
    for path in "/" "/?sort=age&dir=desc&page=5"; do
        echo " GET $path"
        report "1 connection" "$(wrk_cpu "$base$path" -t1 -c1)"
        report "16 connections" "$(wrk_cpu "$base$path" -t2 -c16)"
    done
    stop
done
