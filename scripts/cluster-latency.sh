#!/usr/bin/env bash
# Where does the tail latency come from? Starts a fresh cluster (3 nodes by
# default), offers a fixed rate on the leader's lane and prints the latency
# of every second next to each node's pebble flushes and compactions (logged
# at info with their durations) and the nodes' CPU use. docs/BENCHMARKS.md
# ("Cluster tail latency") explains what it showed.
#   make build && scripts/cluster-latency.sh
#   SIZE=3 RATE=5000 DUR=25s PREFILL=      (PREFILL=45s: fill the ledger first)
#   SPREAD=1                               (offer over every node's lane, 3 conns each)
#   CLUSTER_YAML=$'store:\n  memtable_bytes: 16777216'   (other settings)
set -euo pipefail
cd "$(dirname "$0")/.."
size=${SIZE:-3}
work=$(mktemp -d)
export BIN=bin LOG_LEVEL=info CLUSTER_DIR="$work/c" CLUSTER_SIZE=$size LANE_BASE=33583 OPS_BASE=33080 RAFT_BASE=33001
trap 'scripts/cluster.sh stop >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
scripts/cluster.sh start >"$work/start.txt" || { cat "$work/start.txt"; exit 1; }
l=$(bin/switchctl cluster status --no-hash --json --ops http://127.0.0.1:33080 | python3 -c 'import json,sys; print(json.load(sys.stdin)["leader"])')
k=${l#n}
lane=127.0.0.1:$((33582 + k)) ops=http://127.0.0.1:$((33079 + k))
if [[ -n ${PREFILL:-} ]]; then
  bin/switchload --addr "$lane" --ops "$ops" --mix purchase=100 --duration "$PREFILL" --quiet --verify=false --bin 999990 >/dev/null
fi
cpu() { for n in $(seq 1 "$size"); do awk '{print $14+$15}' "/proc/$(cat "$work/c/n$n.pid")/stat"; done | paste -sd' '; }
c0=$(cpu)
start=$(date +%s.%N)
flags=(--addr "$lane")
if [[ -n ${SPREAD:-} ]]; then
  lanes=$(for n in $(seq 1 "$size"); do echo "127.0.0.1:$((33582 + n))"; done | paste -sd,)
  flags=(--addr "$lanes" --conns $((3 * size)))
fi
bin/switchload "${flags[@]}" --ops "$ops" --mix purchase=100 --duration "${DUR:-25s}" --rate "${RATE:-5000}" \
  --json "$work/r.json" >/dev/null 2>"$work/progress.txt"
c1=$(cpu)
python3 - "$work" "$start" "$size" "$l" "$c0" "$c1" <<'PY'
import json, sys, datetime, re
work, start, size, leader = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
c0, c1 = [int(x) for x in sys.argv[5].split()], [int(x) for x in sys.argv[6].split()]
r = json.load(open(f"{work}/r.json"))
secs = []
for line in open(f"{work}/progress.txt"):
    m = re.match(r"\[\s*([\d.]+)s\].*p50 ([\d.]+)ms p99 ([\d.]+)ms", line)
    if m: secs.append((float(m[1]), m[2], m[3]))
events = {}
for n in range(1, size + 1):
    for line in open(f"{work}/c/logs/n{n}.log"):
        if '"source":"pebble"' not in line: continue
        rec = json.loads(line)
        t = datetime.datetime.fromisoformat(rec["time"].replace("Z", "+00:00")).timestamp() - start
        what = re.sub(r"\[JOB \d+\] ", "", rec["msg"])
        what = re.sub(r" \[[\d ]+\]", "", what)[:90]
        events.setdefault(int(t) + 1, []).append(f"n{n}: {what}")
print(f"{size} node(s), leader {leader}, {r['approved_tps']:.0f} approved/s offered {r['config'].get('rate', '?') if 'config' in r else ''}")
print("second   p50 ms   p99 ms   pebble")
for s, p50, p99 in secs:
    ev = events.get(int(round(s)), [])
    print(f"{s:6.0f} {float(p50):8.2f} {float(p99):8.2f}   " + ("; ".join(ev) if ev else ""))
lat = r["latency_ms"]
print(f"whole run: p50 {lat['p50']} ms, p99 {lat['p99']} ms, p99.9 {lat['p999']} ms, max {lat['max']} ms")
print("node CPU over the run (ticks of 10 ms): " + ", ".join(f"n{i+1} {b-a}" for i, (a, b) in enumerate(zip(c0, c1))))
PY
