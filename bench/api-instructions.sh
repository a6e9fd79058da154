#!/usr/bin/env bash
# Counts the API server's CPU instructions per request (valgrind's
# callgrind) for the list read, the one-student read and a durable PUT, for
# this build and, when BASE_BIN is set, for another build of the api binary
# (say, a previous commit's), and prints their ratio.
#
#   bench/api-instructions.sh [REQUESTS]                (default 2000 reads, REQUESTS/4 writes)
#   BASE_BIN=path/to/old/api bench/api-instructions.sh  (compare two builds)
#   API_BIN=path bench/api-instructions.sh              (another build as "this")
#
# Unlike requests/s, an instruction count does not move when other work
# shares the machine: the same binary and inputs give nearly the same count,
# so a difference of a few percent between two builds is the code's, not the
# machine's. It counts work, not waiting: time spent in fsync or asleep is
# not in it (bench/api.sh measures requests/s and latency). Needs valgrind
# and ab (apt-get install valgrind apache2-utils).
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${1:-2000}
for tool in valgrind callgrind_control ab curl python3; do
    command -v "$tool" >/dev/null || { echo "bench/api-instructions.sh: needs $tool (apt-get install valgrind apache2-utils curl python3)" >&2; exit 1; }
done

if [[ -z ${API_BIN:-} ]]; then
    cargo build --release -q -p student-ages-api --bin api
fi
api_bin=${API_BIN:-${CARGO_TARGET_DIR:-target}/release/api}
work=$(mktemp -d)
pid=""
trap 'if [[ -n $pid ]]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
auth="Authorization: Basic $(printf root:root | base64)"
list_path=/supmit/api/v1.0/get_student_ages

# Prints the instructions counted since the last zeroing, then zeroes.
counted() {
    local before after
    before=$(ls "$work"/cg.out.* 2>/dev/null | wc -l)
    callgrind_control --dump "$1" >/dev/null 2>&1
    for _ in $(seq 100); do
        after=$(ls "$work"/cg.out.* 2>/dev/null | wc -l)
        ((after > before)) && break
        sleep 0.1
    done
    # The newest dump's "totals:" line is its instruction count.
    awk '/^totals:/ {print $2}' "$(ls -t "$work"/cg.out.* | head -1)"
    callgrind_control --zero "$1" >/dev/null 2>&1
}

# Durable PUTs over one keep-alive connection, a different age each time,
# so each is a real write of the file.
put_load() { # port, count
    python3 - "$1" "$2" <<'PY'
import base64, http.client, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
conn = http.client.HTTPConnection("127.0.0.1", port)
auth = "Basic " + base64.b64encode(b"root:root").decode()
for i in range(count):
    conn.request("PUT", f"/supmit/api/v1.0/student_ages/w-{i % 50}", f'{{"age": {i // 50 % 150}}}',
                 {"Authorization": auth, "Content-Type": "application/json"})
    response = conn.getresponse(); response.read()
    if response.status not in (200, 201):
        sys.exit(f"PUT answered {response.status}")
PY
}

# Runs one build under callgrind and prints "list one put" instructions per request.
measure() { # binary
    local port list one put
    port=$(free_port)
    rm -f "$work"/cg.out.*
    cp data/student_age.json "$work/student_age.json"
    API_USERNAME=root API_PASSWORD=root STUDENT_AGE_FILE="$work/student_age.json" \
        LISTEN_ADDR="127.0.0.1:$port" RUST_LOG=info \
        valgrind --tool=callgrind --callgrind-out-file="$work/cg.out.%p" "$1" >"$work/api.log" 2>&1 &
    pid=$!
    for _ in $(seq 300); do
        curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
        sleep 0.1
    done
    # Warm up (first-use caches, the JSON of the snapshot), then count.
    ab -q -k -n 200 -c 8 -H "$auth" "http://127.0.0.1:$port$list_path" >/dev/null
    ab -q -k -n 200 -c 8 -H "$auth" "http://127.0.0.1:$port$list_path/alice" >/dev/null
    put_load "$port" 20
    callgrind_control --zero "$pid" >/dev/null 2>&1
    ab -q -k -n "$requests" -c 8 -H "$auth" "http://127.0.0.1:$port$list_path" >"$work/ab.txt"
    grep -q "^Non-2xx" "$work/ab.txt" && { echo "bench/api-instructions.sh: non-2xx answers" >&2; exit 1; }
    list=$(counted "$pid")
    ab -q -k -n "$requests" -c 8 -H "$auth" "http://127.0.0.1:$port$list_path/alice" >"$work/ab.txt"
    grep -q "^Non-2xx" "$work/ab.txt" && { echo "bench/api-instructions.sh: non-2xx answers" >&2; exit 1; }
    one=$(counted "$pid")
    put_load "$port" $((requests / 4))
    put=$(counted "$pid")
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
    awk -v l="$list" -v o="$one" -v p="$put" -v n="$requests" \
        'BEGIN {printf "%.0f %.0f %.0f\n", l / n, o / n, p / (n / 4)}'
}

echo "instructions per request (callgrind), $requests reads of each kind, $((requests / 4)) durable PUTs"
this=$(measure "$api_bin")
read -r list one put <<<"$this"
printf '%-40s list %8s   one %8s   put %8s\n' "$api_bin" "$list" "$one" "$put"
if [[ -n ${BASE_BIN:-} ]]; then
    base=$(measure "$BASE_BIN")
    read -r blist bone bput <<<"$base"
    printf '%-40s list %8s   one %8s   put %8s\n' "$BASE_BIN" "$blist" "$bone" "$bput"
    awk -v a="$list" -v b="$blist" -v c="$one" -v d="$bone" -v e="$put" -v f="$bput" 'BEGIN {
        printf "this build vs base: list %.2fx   one %.2fx   put %.2fx\n", a / b, c / d, e / f }'
fi
