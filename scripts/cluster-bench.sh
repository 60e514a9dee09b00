#!/usr/bin/env bash
# Cluster benchmarks (docs/BENCHMARKS.md): 1 node vs 3 nodes in one run,
# failover time after kill -9 of the leader, and catch-up of a new node
# from a snapshot. Usage: make build && scripts/cluster-bench.sh
#   BENCH_DURATION=30s      each closed-loop run
#   BENCH_RATE=5000         offered rate of the open-loop latency runs (20 s)
#   CATCHUP_TRANSFERS=1000000  ledger size before a fourth node joins (0: skip)
# Ports 3xxxx, so a `make run` or `make cluster` on the machine is no bother.
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${BENCH_DURATION:-30s}
rate=${BENCH_RATE:-5000}
catchup=${CATCHUP_TRANSFERS:-1000000}
out=${BENCH_OUT:-bench-out/cluster}
mkdir -p "$out"
work=$(mktemp -d)
export BIN=bin LOG_LEVEL=warn
one=(env CLUSTER_DIR="$work/one" CLUSTER_SIZE=1 LANE_BASE=31583 OPS_BASE=31080 RAFT_BASE=31001)
three=(env CLUSTER_DIR="$work/three" CLUSTER_SIZE=3 LANE_BASE=32583 OPS_BASE=32080 RAFT_BASE=32001)
cleanup() {
  "${one[@]}" scripts/cluster.sh stop >/dev/null 2>&1 || true
  "${three[@]}" scripts/cluster.sh stop >/dev/null 2>&1 || true
  for c in one three; do [[ -d "$work/$c/logs" ]] && mkdir -p "$out/logs-$c" && cp "$work/$c/logs/"* "$out/logs-$c/"; done
  rm -rf "$work"
}
trap cleanup EXIT

load() { # name lane ops [switchload flags...]
  local name=$1 lane=$2 ops=$3; shift 3
  bin/switchload --addr "127.0.0.1:$lane" --ops "http://127.0.0.1:$ops" --quiet --mix purchase=100 --json "$out/$name.json" "$@" >"$out/$name.txt"
}
summary() { # name...
  python3 - "$out" "$@" <<'PY'
import json, sys
out, names = sys.argv[1], sys.argv[2:]
tot, p50, p99, ok = 0.0, [], [], True
for n in names:
    r = json.load(open(f"{out}/{n}.json"))
    tot += r["approved_tps"]; p50.append(r["latency_ms"]["p50"]); p99.append(r["latency_ms"]["p99"])
    v = r.get("verification") or {}
    ok = ok and r["approved"] > 0 and v.get("ok", False)
print(f"{tot:9.0f} approved/s   p50 {max(p50):6.2f} ms   p99 {max(p99):6.2f} ms   verification {'OK' if ok else 'FAILED'}")
PY
}
leader_of() { # ops port → leader node id
  bin/switchctl cluster status --no-hash --json --ops "http://127.0.0.1:$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["leader"])'
}

if [[ -z ${SKIP_THROUGHPUT:-} ]]; then
echo "== 1 node"
export SWITCHCTL_CREDENTIALS="$work/one/ops-credentials.json" # switchctl and switchload read it
"${one[@]}" scripts/cluster.sh start >/dev/null
load one-closed 31583 31080 --duration "$dur"
printf '  closed loop, 8x64 in flight, %s:  ' "$dur"; summary one-closed
load one-rate 31583 31080 --duration 20s --rate "$rate"
printf '  open loop %s/s, 20 s:               ' "$rate"; summary one-rate
"${one[@]}" scripts/cluster.sh stop >/dev/null

echo "== 3 nodes (mTLS between nodes)"
export SWITCHCTL_CREDENTIALS="$work/three/ops-credentials.json"
"${three[@]}" scripts/cluster.sh start >/dev/null
l=$(leader_of 32080); k=${l#n}
lane_l=$((32583 + k - 1)); ops_l=$((32080 + k - 1))
load three-closed-leader "$lane_l" "$ops_l" --duration "$dur"
printf '  closed loop on the leader (%s):      ' "$l"; summary three-closed-leader
# Spread: one switchload over all three lanes, 3 conns each (conn i → lane i mod 3);
# its --addr comes after load's and wins. 600 cards, as the three processes had before.
spread=127.0.0.1:32583,127.0.0.1:32584,127.0.0.1:32585
load three-closed-spread "$lane_l" "$ops_l" --addr "$spread" --duration "$dur" --bin 999991 --cards 600 --conns 9
printf '  closed loop spread, 3 lanes x 3x64:  '; summary three-closed-spread
load three-rate-leader "$lane_l" "$ops_l" --duration 20s --rate "$rate"
printf '  open loop %s/s on the leader:       ' "$rate"; summary three-rate-leader
load three-rate-spread "$lane_l" "$ops_l" --addr "$spread" --duration 20s --rate "$rate" --bin 999991 --cards 600 --conns 9
printf '  open loop %s/s spread over 3 lanes: ' "$rate"; summary three-rate-spread
else
export SWITCHCTL_CREDENTIALS="$work/three/ops-credentials.json"
"${three[@]}" scripts/cluster.sh start >/dev/null
fi

echo "== failover: kill -9 of the leader → first approval through a survivor"
for round in $(seq 1 "${FAILOVER_ROUNDS:-3}"); do
  l=$(leader_of 32080 2>/dev/null || leader_of 32081); k=${l#n}
  s=$(( k % 3 + 1 )) # a survivor
  # light background load on the survivor, so the cluster is busy when it happens
  bin/switchload --addr "127.0.0.1:$((32582 + s))" --ops "http://127.0.0.1:$((32079 + s))" --quiet --rate 500 --duration 8s --verify=false --bin 99998$round >/dev/null 2>&1 &
  bg=$!
  sleep 2
  t0=$(date +%s%N)
  kill -9 "$(cat "$work/three/$l.pid")"
  stan=100000
  while :; do
    stan=$((stan + 1))
    if bin/switchctl iso send --addr "127.0.0.1:$((32582 + s))" --mti 0200 --pan 4111111111111111 --amount 0.01 --stan "$stan" --timeout 5s 2>/dev/null | grep -q '^ *39 .* 00 '; then break; fi
  done
  t1=$(date +%s%N)
  echo "  round $round: killed leader $l, first approval via n$s after $(( (t1 - t0) / 1000000 )) ms"
  wait $bg || true
  "${three[@]}" scripts/cluster.sh start >"$out/restart.txt" || { cat "$out/restart.txt"; exit 1; } # restart the killed node
done
sleep 3; bin/switchctl cluster status --no-hash --ops http://127.0.0.1:32080 || true

if (( catchup > 0 )); then
  echo "== catch-up: a new node joins a ledger of $catchup transfers (snapshot + log tail)"
  l=$(leader_of 32080); k=${l#n}
  have=0
  while (( have < catchup )); do
    load catchup-fill $((32582 + k)) $((32079 + k)) --duration 30s --verify=false --bin 999990
    have=$(( have + $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["approved"])' "$out/catchup-fill.json") ))
    echo "  ledger holds ≥ $have transfers"
  done
  # A snapshot on every member now, so their logs are truncated and n4 must
  # be sent a snapshot (raft-wal drops its head in 64 MiB segments; without
  # this, a young cluster still holds its whole log and n4 replays it).
  for p in 32080 32081 32082; do bin/switchctl cluster snapshot --ops "http://127.0.0.1:$p" | sed 's/^/  /'; done
  t0=$(date +%s%N)
  "${three[@]}" scripts/cluster.sh add n4 >/dev/null
  t1=$(date +%s%N)
  # serves: ready (knows the leader) and applied what the leader committed
  while :; do
    lag=$(bin/switchctl cluster status --no-hash --json --ops http://127.0.0.1:32080 | python3 -c '
import json,sys
cs=json.load(sys.stdin); m=[m for m in cs["members"] if m["id"]=="n4"]
print(m[0]["lag"] if m and m[0].get("status") and m[0]["status"]["ready"] else -1)' || echo -1)
    [[ $lag == 0 ]] && break
    sleep 0.2
  done
  t2=$(date +%s%N)
  echo "  n4 ready after $(( (t1 - t0) / 1000000 )) ms, caught up (lag 0) after $(( (t2 - t0) / 1000000 )) ms"
  curl -s http://127.0.0.1:32083/metrics | grep -E '^switchd_store_snapshot_restores_total' | sed 's/^/  n4: /' || true
  curl -s "http://127.0.0.1:$((32079 + k))/metrics" | grep -E '^switchd_store_state_stream' | sed "s/^/  $l: /" || true
  sleep 3; bin/switchctl cluster status --ops http://127.0.0.1:32080
fi
