#!/usr/bin/env bash
# Instructions per request in the demo's request path, counted by
# callgrind: deterministic to a few tenths of a percent, where the load
# benchmark's ratios move by a tenth between runs on a shared box. It counts
# user-space instructions only (no kernel, no cache misses): use it to tell
# whether a change to a hot path does less work, and the load benchmark for
# what that is worth. See BENCHMARKS.md ("Instructions per request").
#
#   crates/doorman-bench/scripts/instructions.sh [MEASURE] [BUILD_DIR] [BENCH_ARGS...]
#
# MEASURE is one of doorman-bench's measures (default: bearer); BUILD_DIR
# holds doorman-demo and doorman-bench built with --release (default:
# target/release). The demo runs on the memory store under valgrind, driven
# by one short measure of doorman-bench (4 connections, 1 thread); only the
# code under hyper's connection dispatcher is counted (request parsing, the
# handler, writing the answer), and the count is divided by the answers
# written (one writev each), every request the measure makes: the measures
# that mint codes first (exchange, flow) count the mints too, so this suits
# bearer, introspection and client_credentials. Further arguments go to
# doorman-bench. Needs valgrind.
set -euo pipefail
MEASURE=${1:-bearer}
DIR=$(cd "${2:-target/release}" && pwd)
shift $(( $# < 2 ? $# : 2 ))
command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 2; }
WORK=$(mktemp -d)
trap 'pkill -TERM -f "valgrind.*$WORK" 2>/dev/null || true; rm -rf "$WORK"' EXIT
cat > "$WORK/doorman-demo" <<WRAP
#!/usr/bin/env bash
valgrind --tool=callgrind --callgrind-out-file=$WORK/callgrind.out \\
  --dump-instr=no --compress-strings=no --compress-pos=no \\
  --collect-atstart=no '--toggle-collect=*Dispatcher*poll_catch*' \\
  "$DIR/doorman-demo" "\$@"
WRAP
chmod +x "$WORK/doorman-demo"
if ! "$DIR/doorman-bench" --stores memory --measures "$MEASURE" --duration 3 --warmup 1 \
    --connections 4 --threads 1 --demo "$WORK/doorman-demo" "$@" > "$WORK/bench.log" 2>&1; then
  echo "doorman-bench failed:" >&2; cat "$WORK/bench.log" >&2; exit 1
fi
# The benchmark kills the wrapper; valgrind writes its counts when it is
# told to stop.
pkill -TERM -f "valgrind.*$WORK" 2>/dev/null || true
while pgrep -f "valgrind.*$WORK" >/dev/null; do sleep 0.2; done
python3 - "$WORK/callgrind.out" "$MEASURE" <<'PY'
import sys
path, measure = sys.argv[1], sys.argv[2]
total = None
answers = 0
callee = ""
with open(path) as f:
    for line in f:
        if line.startswith("totals:") or line.startswith("summary:"):
            total = int(line.split()[1])
        elif line.startswith("cfn="):
            callee = line
        elif line.startswith("calls=") and "writev" in callee:
            answers += int(line.split("=")[1].split()[0])
if not total or not answers:
    sys.exit(f"no counts in {path}")
print(f"{measure}: {total / answers:.0f} instructions per request ({answers} requests)")
PY
