#!/usr/bin/env bash
# A/B end-to-end throughput: switchd built at git revision REV against
# switchd built from this work tree,
# in alternating closed-loop runs of the same switchload on loopback, so the
# ratio holds on a noisy machine (docs/BENCHMARKS.md).
#   scripts/bench-ab.sh REV            # AB_RUNS=3 AB_DURATION=15s
# One node, fsync'd raft log, 0200 purchases, 8 conns x 64 in flight.
set -euo pipefail
cd "$(dirname "$0")/.."
rev=${1:?usage: scripts/bench-ab.sh REV}
runs=${AB_RUNS:-3}
dur=${AB_DURATION:-15s}
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; git worktree remove --force "$work/old-src" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
pid=
git worktree add -q --detach "$work/old-src" "$rev"
(cd "$work/old-src" && go build -o "$work/old/" ./cmd/switchd)
go build -o "$work/new/" ./cmd/switchd ./cmd/switchload
key=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
cat >"$work/ab.yaml" <<YAML
log_level: warn
ops: {listen: "127.0.0.1:28080"}
cluster: {raft_addr: "127.0.0.1:27001"}
switch:
  card_key: $key
  lanes:
    - {name: demo, listen: "127.0.0.1:28583", partners: [demo-acquirer], conns_max: 1024, inflight_max: 256}
YAML
one() { # which → answers/s
  rm -rf "$work/data"
  "$work/$1/switchd" --config "$work/ab.yaml" --data-dir "$work/data" 2>"$work/$1.log" &
  pid=$!
  for _ in $(seq 1 300); do curl -sf http://127.0.0.1:28080/readyz >/dev/null 2>&1 && break; sleep 0.1; done
  # A switchd from before the ops API had OAuth2 writes no credentials.
  local creds=(); [[ -f $work/data/ops-credentials.json ]] && creds=(--credentials "$work/data/ops-credentials.json")
  "$work/new/switchload" --addr 127.0.0.1:28583 --ops http://127.0.0.1:28080 "${creds[@]}" --conns 8 --inflight 64 --quiet \
    --duration "$dur" --mix purchase=100 --json "$work/$1.json" >/dev/null
  kill $pid; wait $pid || true; pid=
  printf '%s %s\n' "$(grep -o '"tps": *[0-9.]*' "$work/$1.json" | head -1 | sed 's/.*: *//')" \
    "$(grep -o '"p99": *[0-9.]*' "$work/$1.json" | head -1 | sed 's/.*: *//')"
}
echo "run  old answers/s  old p99 ms  new answers/s  new p99 ms  new/old answers/s  (old = $rev)"
for i in $(seq 1 "$runs"); do
  read -r ot op < <(one old)
  read -r nt np < <(one new)
  awk -v i="$i" -v ot="$ot" -v op="$op" -v nt="$nt" -v np="$np" \
    'BEGIN { printf "%3d  %13.0f  %10.2f  %13.0f  %10.2f  %17.3f\n", i, ot, op, nt, np, nt / ot }'
done
