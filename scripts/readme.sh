#!/usr/bin/env bash
# Runs every command that README.md shows in its ```sh blocks, in order, on
# a copy of this checkout, so that the README cannot drift (`make readme`;
# .ci/run runs it after `make test`). Commands run as they are written, in
# one bash with `set -euo pipefail`; the first failure stops the run and
# names its README line. Three lines are handled by this script instead:
#   make run     started in the background; the next line runs once /readyz answers
#   make test    skipped: it is the step of .ci/run before this script
#   make chaos   skipped: hours long; TestChaosShort inside make test runs it short
# and the first `make cluster` stops the background `make run` first (they
# share the ports). Make targets the prose names inline must exist (a dry
# run). Everything started is stopped at the end; READMEKEEP=1
# keeps the copy and its logs.
set -euo pipefail
cd "$(dirname "$0")/.."

ports=(8443 8583 8584 8585 8586 8080 8081 8082 8083 7001 7002 7003 7004 9583 9584 9593 9594 9080 9081 9001 9002 9683 9180 9101 9090 9091 9102 9480 19583 19090 19480 19091)
for p in "${ports[@]}"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "readme: port $p is in use (make run or make cluster still up?); the README's commands need it" >&2
    exit 1
  fi
done

work=$(mktemp -d "${TMPDIR:-/tmp}/switchd-readme.XXXXXX")
copy="$work/switchd"
mkdir -p "$copy"
# Tracked and new (not ignored) files as they are in the work tree.
git ls-files -z -co --exclude-standard | while IFS= read -r -d '' f; do
  [[ -e $f ]] && cp --parents -p -- "$f" "$copy/"
done

# Each command of the ```sh blocks, continuation lines joined, as
# "LINE<TAB>COMMAND".
awk '
  /^```sh[[:space:]]*$/ { in_block = 1; next }
  /^```/ && in_block { in_block = 0; next }
  in_block {
    if (cmd == "") { start = NR }
    line = $0
    if (line ~ /\\$/) { sub(/\\$/, "", line); cmd = cmd line; next }
    cmd = cmd line
    if (cmd ~ /[^[:space:]]/) { printf "%d\t%s\n", start, cmd }
    cmd = ""
  }
' README.md >"$work/commands.tsv"
# Make targets the prose names inline (`make bench`, `make fuzz`, …) are
# too long to run here; each must at least exist (a dry run).
for target in $(grep -o '`make [a-z][a-z-]*' README.md | sed 's/`make //' | sort -u); do
  make -n -C "$copy" "$target" >/dev/null 2>&1 || { echo "readme: README.md names 'make $target', which the Makefile does not have" >&2; exit 1; }
done
count=$(wc -l <"$work/commands.tsv")
[[ $count -gt 0 ]] || { echo "readme: no commands found in README.md" >&2; exit 1; }

script="$work/readme-run.sh"
cat >"$script" <<'PRE'
set -euo pipefail
run_pid=
readme_make_run() {
  setsid make run >"$READMEWORK/make-run.log" 2>&1 &
  run_pid=$!
  for _ in $(seq 1 600); do
    curl -fsS http://127.0.0.1:8080/readyz >/dev/null 2>&1 && return 0
    kill -0 "$run_pid" 2>/dev/null || { echo "make run exited:"; tail -30 "$READMEWORK/make-run.log"; return 1; }
    sleep 0.1
  done
  echo "make run not ready after 60s"; tail -30 "$READMEWORK/make-run.log"; return 1
}
readme_stop_run() {
  [[ -n $run_pid ]] || return 0
  kill -TERM -- "-$run_pid" 2>/dev/null || true
  for _ in $(seq 1 200); do kill -0 "$run_pid" 2>/dev/null || break; sleep 0.1; done
  run_pid=
}
trap readme_stop_run EXIT
PRE
cluster_started=0
while IFS=$'\t' read -r line cmd; do
  printf 'echo %q\n' "README.md:$line: $cmd" >>"$script"
  case "$cmd" in
    "make run"|"make run "*) echo readme_make_run >>"$script" ;;
    "make test"|"make test "*) echo 'echo "  (skipped: make test is the CI step before this script)"' >>"$script" ;;
    "make chaos"|"make chaos "*) echo 'echo "  (skipped: hours long; TestChaosShort in make test runs it short)"' >>"$script" ;;
    "make cluster"|"make cluster "*)
      if ((cluster_started == 0)); then echo readme_stop_run >>"$script"; cluster_started=1; fi
      printf '%s\n' "$cmd" >>"$script" ;;
    *) printf '%s\n' "$cmd" >>"$script" ;;
  esac
done <"$work/commands.tsv"

cleanup() {
  (cd "$copy" && ./scripts/cluster.sh stop >/dev/null 2>&1) || true
  pkill -f "$copy/bin/switchd" 2>/dev/null || true
  if [[ -n ${READMEKEEP:-} ]]; then echo "readme: kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
echo "readme: running the $count commands of README.md in $copy"
start=$SECONDS
(cd "$copy" && READMEWORK="$work" bash "$script")
echo "readme: all $count commands of README.md ran ($((SECONDS - start)) s)"
