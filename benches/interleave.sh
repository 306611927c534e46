#!/usr/bin/env bash
# What RFC 9769's interleaved mode costs sundial's server and what it buys,
# on loopback: one `sundial run --observe` server pinned to SERVER_CORE,
# the generator pinned to GEN_CORE.
#
# 1. Cost: `sundial bench ntp|nts --interleave-ratio` sweeps basic requests
#    and requests that ask for interleaving (the server then saves every
#    exchange and has the kernel timestamp every answer) in turn, ROUNDS
#    times each, and prints the ratio of their lossless rates; then the
#    same at FIXED_RATE, for the server's CPU per answer, which a shared
#    machine disturbs less.
# 2. The basic path: basic requests at FIXED_RATE against this server and
#    against a second one with `interleaved = false` (no timestamping at
#    all), in turn, for CPU per answer.
# 3. Benefit: under a fixed load of LOAD_RATE plain requests/s, `sundial
#    bench xleave` sends pairs of requests and reports the spread of the
#    server's transmit timestamp (T3) against the kernel's send time of the
#    same answer, in basic mode, and T4 - T3 as the client sees it in both
#    modes.
# 4. For scale (CHRONY=1, the default, when chronyd is installed): the
#    sweeps of step 1 against chronyd -x on the same core. chrony too asks
#    the kernel for a transmit timestamp of each answer to a request whose
#    origin has its lowest bit set, as every interleaved request here has.
#
# Every step is bounded by `timeout`; every process it starts is stopped
# on exit. Raw outputs stay in $OUT.
#
# Usage: benches/interleave.sh          (see benches/README.md)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$(mktemp -d /tmp/sundial-interleave.XXXXXX)}
SERVER_CORE=${SERVER_CORE:-1}
GEN_CORE=${GEN_CORE:-0}
START_RATE=${START_RATE:-20000}
STEP_FACTOR=${STEP_FACTOR:-1.1}
FIXED_RATE=${FIXED_RATE:-20000}
FIXED_SECONDS=${FIXED_SECONDS:-6}
STEP_SECONDS=${STEP_SECONDS:-2}
ROUNDS=${ROUNDS:-2}
CPU_ROUNDS=${CPU_ROUNDS:-3}
MODES=${MODES:-"ntp nts"}
LOAD_RATE=${LOAD_RATE:-100000}
PROBE_SECONDS=${PROBE_SECONDS:-30}
PROBE_RATE=${PROBE_RATE:-20}
CHRONY=${CHRONY:-1}
mkdir -p "$OUT"

. "$ROOT/benches/lib.sh"
setup_bench

ntp=12390 ke=14390
dir=$OUT/sundial; mkdir -p "$dir"
write_ntp_toml "$dir/ntp.toml" "$ntp" "$ke" "$CHAIN" "$KEY" "$dir"
taskset -c "$SERVER_CORE" "$SUNDIAL" run --observe -c "$dir/ntp.toml" 2> "$dir/log" &
PID=$!
PIDS+=("$PID")
wait_tcp "$ke"
sleep 1

# The same server with interleaving off, for the basic path's cost.
off=$OUT/sundial-off; mkdir -p "$off"
write_ntp_toml "$off/ntp.toml" "$((ntp + 1))" "$((ke + 1))" "$CHAIN" "$KEY" "$off"
sed -i "s/^listen = \"127.0.0.1:$((ntp + 1))\"/&\ninterleaved = false/" "$off/ntp.toml"
taskset -c "$SERVER_CORE" "$SUNDIAL" run --observe -c "$off/ntp.toml" 2> "$off/log" &
OFF=$!
PIDS+=("$OFF")
wait_tcp "$((ke + 1))"

bench() { timeout 1800 taskset -c "$GEN_CORE" "$SUNDIAL" bench "$@"; }
nts=(--ke "127.0.0.1:$ke" --ca "$CA")

# sweeps MODE NTP_PORT KE_PORT PID FILE: basic then interleaved sweeps,
# ROUNDS times, against the server on those ports; output into FILE.
sweeps() {
    local extra=()
    [ "$1" = nts ] && extra=(--ke "127.0.0.1:$3" --ca "$CA")
    bench "$1" --server "127.0.0.1:$2" "${extra[@]}" --server-pid "$4" \
        --interleave-ratio --rounds "$ROUNDS" \
        --start-rate "$START_RATE" --step "$STEP_FACTOR" --step-seconds "$STEP_SECONDS" \
        | tee "$5" >&2
}

for mode in $MODES; do
    extra=()
    [ "$mode" = nts ] && extra=("${nts[@]}")
    echo "# $mode: basic and interleaved sweeps, $ROUNDS rounds" >&2
    sweeps "$mode" "$ntp" "$ke" "$PID" "$OUT/$mode-ratio.txt"
    echo "# $mode: CPU per answer at $FIXED_RATE/s, basic and interleaved requests" >&2
    bench "$mode" --server "127.0.0.1:$ntp" "${extra[@]}" --server-pid "$PID" \
        --interleave-ratio --rounds "$CPU_ROUNDS" --rate "$FIXED_RATE" --duration "$FIXED_SECONDS" \
        | tee "$OUT/$mode-cpu.txt" >&2
done

echo "# basic requests: interleaving on and off, CPU per answer at $FIXED_RATE/s" >&2
for round in $(seq "$CPU_ROUNDS"); do
    for target in "on $ntp $PID" "off $((ntp + 1)) $OFF"; do
        set -- $target
        cpu=$(bench ntp --server "127.0.0.1:$2" --server-pid "$3" --rate "$FIXED_RATE" --duration "$FIXED_SECONDS" \
            | grep -o 'cpu_us_per_response=[^ ]*' | cut -d= -f2)
        echo "BASIC_PATH round=$round interleaved=$1 cpu_us=$cpu" | tee -a "$OUT/basic-path.txt" >&2
    done
done

echo "# T3 against the kernel's send time, idle" >&2
bench xleave --server "127.0.0.1:$ntp" --duration "$PROBE_SECONDS" --rate "$PROBE_RATE" \
    | tee "$OUT/probe-idle.txt" >&2
echo "# T3 against the kernel's send time, under $LOAD_RATE plain requests/s" >&2
bench ntp --server "127.0.0.1:$ntp" --rate "$LOAD_RATE" --duration "$((PROBE_SECONDS + 4))" \
    > "$OUT/load.txt" &
LOAD=$!
PIDS+=("$LOAD")
sleep 2
bench xleave --server "127.0.0.1:$ntp" --duration "$PROBE_SECONDS" --rate "$PROBE_RATE" \
    | tee "$OUT/probe-load.txt" >&2
wait "$LOAD" || true
cat "$OUT/load.txt" >&2

if [ "$CHRONY" = 1 ] && [ -x "$CHRONYD" ]; then
    start_chronyd "$OUT/chrony" "$SERVER_CORE" "$((ntp + 2))" "$((ke + 2))"
    PIDS+=("$PID")
    wait_tcp "$((ke + 2))"
    sleep 1
    for mode in $MODES; do
        echo "# chronyd, $mode: basic and interleaved sweeps, $ROUNDS rounds" >&2
        sweeps "$mode" "$((ntp + 2))" "$((ke + 2))" "$PID" "$OUT/chrony-$mode-ratio.txt"
    done
    kill "$PID"
fi

echo
for mode in $MODES; do
    grep -h "ROUND_XLEAVE\|RESULT_XLEAVE" "$OUT/$mode-ratio.txt" "$OUT/$mode-cpu.txt" | sed "s/^/$mode /"
    if [ -f "$OUT/chrony-$mode-ratio.txt" ]; then
        grep -h "ROUND_XLEAVE\|RESULT_XLEAVE" "$OUT/chrony-$mode-ratio.txt" | sed "s/^/chronyd $mode /"
    fi
done
cat "$OUT/basic-path.txt"
echo "idle:"; grep -v '^#' "$OUT/probe-idle.txt"
echo "under load ($(grep -o 'RESULT_FIXED rate=[0-9]*' "$OUT/load.txt" | cut -d= -f2)/s offered):"
grep -v '^#' "$OUT/probe-load.txt"
echo "# raw outputs in $OUT"
