#!/usr/bin/env bash
# Same-run comparison of NTP/NTS servers on loopback: sundial, chronyd
# (Debian's chrony, always -x: it never touches the clock) and ntpd-rs
# (`ntp-daemon` with no sources, which never changes the clock either).
# Each server is pinned to SERVER_CORE, the generator (`sundial bench`) to
# GEN_CORE. For each server: an NTP sweep, an NTS sweep, CPU per response
# at a fixed FIXED_RATE for NTP and NTS (from /proc/PID/stat), RSS under
# NTS load, the rx->tx gap at half of the server's NTS peak, and NTS-KE
# handshakes per second (full TLS 1.3 handshakes, 8 cookies each) with the
# server's CPU per handshake (chronyd's NTS-KE helper process included).
# Last, unless CEILING=0, the same NTP sweep against `sundial bench
# reflect` on the same core: a null server with sundial's batched socket
# I/O and no protocol work, the most any UDP-socket server can answer there.
# Prints one table; raw outputs stay in $OUT. Every step is bounded by
# `timeout`; every process it starts is stopped on exit.
#
# Usage: benches/compare.sh            (see benches/README.md)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$(mktemp -d /tmp/sundial-compare.XXXXXX)}
SERVER_CORE=${SERVER_CORE:-1}
GEN_CORE=${GEN_CORE:-0}
START_RATE=${START_RATE:-2000}
STEP_FACTOR=${STEP_FACTOR:-1.5}
STEP_SECONDS=${STEP_SECONDS:-2}
FIXED_RATE=${FIXED_RATE:-10000}
FIXED_SECONDS=${FIXED_SECONDS:-10}
KE_CONNECTIONS=${KE_CONNECTIONS:-8}
SERVERS=${SERVERS:-"sundial chrony ntpd-rs"}
CEILING=${CEILING:-1}
NTPD_RS=${NTPD_RS:-$(command -v ntp-daemon || echo /tmp/ntpd-rs/bin/ntp-daemon)}
mkdir -p "$OUT"

. "$ROOT/benches/lib.sh"
setup_bench

# start_NAME NTP_PORT KE_PORT: starts the server pinned, sets PID.
start_sundial() {
    local dir=$OUT/sundial; mkdir -p "$dir"
    write_ntp_toml "$dir/ntp.toml" "$1" "$2" "$CHAIN" "$KEY" "$dir"
    taskset -c "$SERVER_CORE" "$SUNDIAL" run --observe -c "$dir/ntp.toml" 2> "$dir/log" &
    PID=$!
}

start_chrony() { start_chronyd "$OUT/chrony" "$SERVER_CORE" "$1" "$2"; }

start_ntpd-rs() {
    local dir=$OUT/ntpd-rs; mkdir -p "$dir"
    write_ntp_toml "$dir/ntp.toml" "$1" "$2" "$CHAIN" "$KEY" "$dir"
    taskset -c "$SERVER_CORE" "$NTPD_RS" -c "$dir/ntp.toml" 2> "$dir/log" &
    PID=$!
}

bench() { timeout 900 taskset -c "$GEN_CORE" "$SUNDIAL" bench "$@"; }
field() { grep -o "$2=[^ ]*" "$1" | tail -1 | cut -d= -f2; }

port=12300
declare -A NTP NTS PEAK_NTP PEAK_NTS CPU_NTS CPU_NTP RSS HWM GAP50 GAP99 GAPRATE KE KE_CPU
for name in $SERVERS; do
    if [ "$name" = ntpd-rs ] && [ ! -x "$NTPD_RS" ]; then
        echo "# ntpd-rs: no ntp-daemon at $NTPD_RS (cargo install ntpd --locked); skipped" >&2
        continue
    fi
    if [ "$name" = chrony ] && [ ! -x "$CHRONYD" ]; then
        echo "# chrony: chronyd not found (apt-get install chrony); skipped" >&2
        continue
    fi
    port=$((port + 10)); ntp=$port; ke=$((port + 2000))
    echo "# $name: NTP 127.0.0.1:$ntp, NTS-KE 127.0.0.1:$ke, pinned to core $SERVER_CORE" >&2
    "start_$name" "$ntp" "$ke"
    PIDS+=("$PID")
    wait_tcp "$ke"
    sleep 1
    nts=(--server "127.0.0.1:$ntp" --ke "127.0.0.1:$ke" --ca "$CA" --server-pid "$PID")
    bench ntp --server "127.0.0.1:$ntp" --server-pid "$PID" --start-rate "$START_RATE" --step "$STEP_FACTOR" --step-seconds "$STEP_SECONDS" | tee "$OUT/$name-ntp-sweep.txt" >&2
    bench nts "${nts[@]}" --start-rate "$START_RATE" --step "$STEP_FACTOR" --step-seconds "$STEP_SECONDS" | tee "$OUT/$name-nts-sweep.txt" >&2
    # Memory right after the NTS sweep ran the server to saturation.
    RSS[$name]=$(awk '/^VmRSS/ {print $2}' "/proc/$PID/status")
    HWM[$name]=$(awk '/^VmHWM/ {print $2}' "/proc/$PID/status")
    bench ntp --server "127.0.0.1:$ntp" --server-pid "$PID" --rate "$FIXED_RATE" --duration "$FIXED_SECONDS" | tee "$OUT/$name-ntp-fixed.txt" >&2
    bench nts "${nts[@]}" --rate "$FIXED_RATE" --duration "$FIXED_SECONDS" | tee "$OUT/$name-nts-fixed.txt" >&2
    NTP[$name]=$(field "$OUT/$name-ntp-sweep.txt" max_lossless_offered)
    NTS[$name]=$(field "$OUT/$name-nts-sweep.txt" max_lossless_offered)
    PEAK_NTP[$name]=$(field "$OUT/$name-ntp-sweep.txt" peak_answered)
    PEAK_NTS[$name]=$(field "$OUT/$name-nts-sweep.txt" peak_answered)
    CPU_NTP[$name]=$(field "$OUT/$name-ntp-fixed.txt" cpu_us_per_response)
    CPU_NTS[$name]=$(field "$OUT/$name-nts-fixed.txt" cpu_us_per_response)
    half=$(( ${NTS[$name]:-0} / 2 )); [ "$half" -ge 1000 ] || half=1000
    bench nts "${nts[@]}" --rate "$half" --duration "$FIXED_SECONDS" | tee "$OUT/$name-nts-half.txt" >&2
    GAPRATE[$name]=$half
    GAP50[$name]=$(field "$OUT/$name-nts-half.txt" gap50_us)
    GAP99[$name]=$(field "$OUT/$name-nts-half.txt" gap99_us)
    bench ke --ke "127.0.0.1:$ke" --ca "$CA" --server-pid "$PID" --connections "$KE_CONNECTIONS" --duration "$FIXED_SECONDS" | tee "$OUT/$name-ke.txt" >&2
    KE[$name]=$(field "$OUT/$name-ke.txt" handshakes_per_s)
    KE_CPU[$name]=$(field "$OUT/$name-ke.txt" cpu_us_per_handshake)
    kill "$PID"; wait "$PID" 2>/dev/null || true
done

if [ "$CEILING" = 1 ]; then
    port=$((port + 10))
    echo "# ceiling: sundial bench reflect on 127.0.0.1:$port, pinned to core $SERVER_CORE" >&2
    taskset -c "$SERVER_CORE" "$SUNDIAL" bench reflect --listen "127.0.0.1:$port" --duration 600 > "$OUT/reflect.log" &
    PID=$!; PIDS+=("$PID"); sleep 0.5
    bench ntp --server "127.0.0.1:$port" --server-pid "$PID" --start-rate "$START_RATE" --step "$STEP_FACTOR" --step-seconds "$STEP_SECONDS" | tee "$OUT/reflect-ntp-sweep.txt" >&2
    bench ntp --server "127.0.0.1:$port" --server-pid "$PID" --rate "$FIXED_RATE" --duration "$FIXED_SECONDS" | tee "$OUT/reflect-ntp-fixed.txt" >&2
    CEIL=$(field "$OUT/reflect-ntp-sweep.txt" max_lossless_offered)
    CEIL_PEAK=$(field "$OUT/reflect-ntp-sweep.txt" peak_answered)
    CEIL_CPU=$(grep -v '^#' "$OUT/reflect-ntp-sweep.txt" | awk '$1 ~ /^[0-9]/ && $4 + 0 < 1 && $9 != "-" {c = $9} END {print c}')
    kill "$PID"; wait "$PID" 2>/dev/null || true
fi

ratio() { # a b -> a/b with two decimals, or - when either is missing/zero
    awk -v a="${1:-}" -v b="${2:-}" 'BEGIN { if (a == "" || b == "" || a == "-" || b == "-" || b + 0 == 0) print "-"; else printf "%.2f", a / b }'
}

{
    echo
    echo "## $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(uname -r)"
    echo "server core $SERVER_CORE, generator core $GEN_CORE; steps x${STEP_FACTOR} of ${STEP_SECONDS}s from $START_RATE/s; CPU at $FIXED_RATE/s for ${FIXED_SECONDS}s"
    echo
    printf '| %-8s | %10s | %10s | %10s | %10s | %10s | %10s | %8s | %8s | %22s | %6s | %9s |\n' server "NTP <1%/s" "NTP peak/s" "NTS <1%/s" "NTS peak/s" "CPU µs NTP" "CPU µs NTS" "RSS KiB" "HWM KiB" "rx→tx p50/p99 µs @ r/s" "KE/s" "CPU µs KE"
    printf '|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n' ---------- ------------ ------------ ------------ ------------ ------------ ------------ ---------- ---------- ------------------------ -------- -----------
    for name in $SERVERS; do
        [ -n "${NTS[$name]:-}" ] || continue
        printf '| %-8s | %10s | %10s | %10s | %10s | %10s | %10s | %8s | %8s | %22s | %6s | %9s |\n' "$name" "${NTP[$name]}" "${PEAK_NTP[$name]}" "${NTS[$name]}" "${PEAK_NTS[$name]}" "${CPU_NTP[$name]}" "${CPU_NTS[$name]}" "${RSS[$name]}" "${HWM[$name]}" "${GAP50[$name]}/${GAP99[$name]} @${GAPRATE[$name]}" "${KE[$name]:-}" "${KE_CPU[$name]:-}"
    done
    echo
    for peer in chrony ntpd-rs; do
        [ -n "${NTS[$peer]:-}" ] && [ -n "${NTS[sundial]:-}" ] || continue
        echo "sundial / $peer: NTP <1% rate $(ratio "${NTP[sundial]}" "${NTP[$peer]}")x (peak $(ratio "${PEAK_NTP[sundial]}" "${PEAK_NTP[$peer]}")x), NTS <1% rate $(ratio "${NTS[sundial]}" "${NTS[$peer]}")x (peak $(ratio "${PEAK_NTS[sundial]}" "${PEAK_NTS[$peer]}")x), CPU per NTP response $(ratio "${CPU_NTP[sundial]}" "${CPU_NTP[$peer]}")x, CPU per NTS response $(ratio "${CPU_NTS[sundial]}" "${CPU_NTS[$peer]}")x, RSS $(ratio "${RSS[sundial]}" "${RSS[$peer]}")x, NTS-KE handshakes/s $(ratio "${KE[sundial]:-}" "${KE[$peer]:-}")x, CPU per handshake $(ratio "${KE_CPU[sundial]:-}" "${KE_CPU[$peer]:-}")x"
    done
    if [ -n "${CEIL:-}" ]; then
        echo
        echo "ceiling (null server, same socket I/O, no protocol work, same core): NTP <1% ${CEIL}/s, peak ${CEIL_PEAK}/s, CPU ${CEIL_CPU} µs per answer at its highest loss-free step"
        for peer in chrony ntpd-rs; do
            [ -n "${NTS[$peer]:-}" ] || continue
            echo "ceiling / $peer: NTP <1% rate $(ratio "$CEIL" "${NTP[$peer]}")x, over $peer's NTS <1% rate $(ratio "$CEIL" "${NTS[$peer]}")x"
        done
    fi
    echo
    echo "raw outputs: $OUT"
} | tee "$OUT/table.md"
