#!/usr/bin/env bash
# Times the deployer against the local Docker daemon with hyperfine and
# prints the image sizes: cold `up` (stack removed first, images built),
# no-op `up` (nothing changed: cargo check of the binaries, image input
# hashes, one inspect per service), and `status`.
#
#   bench/deployer.sh [RUNS]     (default 10; needs hyperfine: apt-get install hyperfine)
#
# Runs its own compose project on its own ports and removes it afterwards.
# Compare figures within one run: the machines are shared and noisy.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
command -v hyperfine >/dev/null || { echo "bench/deployer.sh: needs hyperfine (apt-get install hyperfine)" >&2; exit 1; }

cargo build --release -q -p deployer
deployer=$PWD/target/release/deployer
export COMPOSE_PROJECT_NAME="bench-deployer-$$"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
API_PORT=$(free_port); FRONTEND_PORT=$(free_port); export API_PORT FRONTEND_PORT
trap '"$deployer" down --volumes >/dev/null 2>&1 || true' EXIT

"$deployer" build >/dev/null
echo "== images"
for repo in student-ages-api student-ages-frontend; do
    docker image inspect -f "$repo {{.Size}}" "$repo:latest" |
        awk '{ printf "%-24s %.1f MB\n", $1, $2 / 1000000 }'
done

echo "== timings"
hyperfine --style basic --runs "$runs" --warmup 1 \
    --prepare "$deployer down --volumes >/dev/null 2>&1" \
    --command-name "cold up (--no-build)" "$deployer up --no-build >/dev/null"
"$deployer" up >/dev/null
hyperfine --style basic --runs "$runs" --warmup 1 \
    --command-name "no-op up (with the build check)" "$deployer up >/dev/null" \
    --command-name "status" "$deployer status >/dev/null"
