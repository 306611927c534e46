#!/usr/bin/env bash
# Memory over a long NTS load: starts `sundial run --observe` pinned to
# SERVER_CORE, offers RATE NTS requests/s from GEN_CORE for SECONDS_TOTAL, and
# samples the server's VmRSS every SAMPLE seconds. Prints the series and
# the growth from the first sample after WARMUP seconds to the last.
# Bounded by `timeout`; the server is stopped on exit. Never touches the
# clock (--observe, and the server has no sources).
#
# Usage: benches/soak.sh      (SECONDS_TOTAL=300 RATE=100000 by default)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$(mktemp -d /tmp/sundial-soak.XXXXXX)}
SERVER_CORE=${SERVER_CORE:-1}
GEN_CORE=${GEN_CORE:-0}
RATE=${RATE:-100000}
SECONDS_TOTAL=${SECONDS_TOTAL:-300}
SAMPLE=${SAMPLE:-10}
WARMUP=${WARMUP:-20}
mkdir -p "$OUT"
. "$ROOT/benches/lib.sh"
setup_bench

write_ntp_toml "$OUT/ntp.toml" 12399 14699 "$CHAIN" "$KEY" "$OUT"
taskset -c "$SERVER_CORE" "$SUNDIAL" run --observe -c "$OUT/ntp.toml" 2> "$OUT/server.log" &
PID=$!
PIDS+=("$PID")
wait_tcp 14699

timeout $((SECONDS_TOTAL + 120)) taskset -c "$GEN_CORE" "$SUNDIAL" bench nts \
    --server 127.0.0.1:12399 --ke 127.0.0.1:14699 --ca "$CA" \
    --rate "$RATE" --duration "$SECONDS_TOTAL" --server-pid "$PID" > "$OUT/bench.txt" &
BENCH=$!
start=$(date +%s)
echo "# sundial soak: $RATE NTS requests/s for $SECONDS_TOTAL s; VmRSS of pid $PID every $SAMPLE s" | tee "$OUT/rss.txt"
while kill -0 "$BENCH" 2>/dev/null; do
    t=$(( $(date +%s) - start ))
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$PID/status")
    echo "t=${t}s rss_kib=$rss" | tee -a "$OUT/rss.txt"
    sleep "$SAMPLE"
done
wait "$BENCH"
grep RESULT_FIXED "$OUT/bench.txt" | tee -a "$OUT/rss.txt"
sed -n 's/^t=\([0-9]*\)s rss_kib=\([0-9]*\)$/\1 \2/p' "$OUT/rss.txt" | awk -v w="$WARMUP" '
    $1 >= w && first == "" { first = $2 }
    { last = $2; if ($2 > max) max = $2 }
    END { printf "RSS after warm-up %s KiB, at the end %s KiB, highest %s KiB: growth %d KiB\n", first, last, max, last - first }' | tee -a "$OUT/rss.txt"
echo "raw outputs: $OUT"
