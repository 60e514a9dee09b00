#!/usr/bin/env bash
# End-to-end benchmark: one switchd node (fsync'd raft log) on loopback,
# driven by switchload. Prints switchload's summaries and writes the JSON
# next to them. Usage: scripts/bench-e2e.sh   (after `make build`)
#   BENCH_DURATION=60s    closed-loop run length (all 0200 purchases)
#   BENCH_RATE=5000       offered rate of the open-loop latency run
#   BENCH_RATE_DURATION=30s
#   BENCH_CONNS=8 BENCH_INFLIGHT=64
# Ports differ from the demo's so a `make run` on the same machine is no bother.
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${BENCH_DURATION:-60s}
rate=${BENCH_RATE:-5000}
rate_dur=${BENCH_RATE_DURATION:-30s}
conns=${BENCH_CONNS:-8}
inflight=${BENCH_INFLIGHT:-64}
out=${BENCH_OUT:-bench-out}
mkdir -p "$out"
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$work"' EXIT

cat > "$work/bench.yaml" <<YAML
log_level: warn
ops: {listen: "127.0.0.1:28080"}
cluster: {raft_addr: "127.0.0.1:27001"}
switch:
  card_key: $(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
  lanes:
    - {name: demo, listen: "127.0.0.1:28583", partners: [demo-acquirer], conns_max: 1024, inflight_max: 256}
YAML
bin/switchd --config "$work/bench.yaml" --data-dir "$work/data" 2> "$work/switchd.log" &
pid=$!
for _ in $(seq 1 200); do
  curl -sf http://127.0.0.1:28080/readyz >/dev/null 2>&1 && break
  sleep 0.1
done
curl -sf http://127.0.0.1:28080/readyz >/dev/null || { cat "$work/switchd.log"; exit 1; }

common=(--addr 127.0.0.1:28583 --ops http://127.0.0.1:28080 --credentials "$work/data/ops-credentials.json" --conns "$conns" --inflight "$inflight" --quiet)
echo "== closed loop, 0200 purchases, $dur"
bin/switchload "${common[@]}" --duration "$dur" --mix purchase=100 --json "$out/closed.json"
echo "== open loop, $rate/s offered, 0200 purchases, $rate_dur"
bin/switchload "${common[@]}" --duration "$rate_dur" --rate "$rate" --mix purchase=100 --json "$out/rate.json"
echo "== open loop, $rate/s offered, default mix, $rate_dur"
bin/switchload "${common[@]}" --duration "$rate_dur" --rate "$rate" --json "$out/rate-mix.json"
