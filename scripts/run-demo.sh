#!/usr/bin/env bash
# make run: the demo switch with the simulated hosts its demo
# configuration forwards to — an issuer for cards of BIN 400000 (ISO 8583
# on 127.0.0.1:9583, control API 127.0.0.1:9090) and a biller (HTTP on
# 127.0.0.1:9480, control API 127.0.0.1:9091). switchd runs in the
# foreground; Ctrl-C (or SIGTERM to this script) stops all three.
# Usage: scripts/run-demo.sh [switchd flags...]   (after `make build`)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-bin}
for p in 9583 9090 9480 9091; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "run-demo: port 127.0.0.1:$p is in use (another make run, or a simulator?); the demo's simulated hosts need it" >&2
    exit 1
  fi
done
pids=()
stop() {
  trap - EXIT INT TERM
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop EXIT
trap 'stop; exit 130' INT
trap 'stop; exit 143' TERM
"$bin/switchload" sim issuer --listen 127.0.0.1:9583 --control 127.0.0.1:9090 &
pids+=($!)
# The biller signs its reversals (POST /v1/billers/demo-biller/reversals on
# the ops listener) with the secret switchd checks them against, and checks
# the signature switchd puts on its payments with another: both made here
# first if missing, in the form switchd's demo would make them.
secret=data/demo-biller.secret
signing=data/demo-biller-signing.secret
for f in "$secret" "$signing"; do
  if [[ ! -f $f ]]; then
    mkdir -p data
    (umask 077; printf 'whsec_%s\n' "$(head -c 32 /dev/urandom | base64 -w0)" > "$f")
  fi
done
"$bin/switchload" sim biller --listen 127.0.0.1:9480 --control 127.0.0.1:9091 \
  --reversal-url http://127.0.0.1:8080/v1/billers/demo-biller/reversals --webhook-secret-file "$secret" \
  --request-signing-secret-file "$signing" &
pids+=($!)
"$bin/switchd" "$@" &
pids+=($!)
# Whichever ends first ends the demo.
set +e
wait -n
rc=$?
set -e
exit "$rc"
