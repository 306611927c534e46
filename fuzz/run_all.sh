#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 300) each, two at a time, with
# coverage (cargo-fuzz, nightly), and prints one summary line per target.
# Logs go to $LOG_DIR (default target/fuzz-logs). Usage: fuzz/run_all.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-300}"
log_dir="${LOG_DIR:-target/fuzz-logs}"
mkdir -p "$log_dir"
targets=(packet extension_fields ke_record ke_client_response ke_server_request
    cookie_open keyset_load roundtrip server_handle refclock interleave config)

cargo +nightly fuzz build
run_lane() {
    for t in "$@"; do
        dict=()
        [ -f "$t.dict" ] && dict=(-dict="$t.dict")
        nice -n 10 cargo +nightly fuzz run "$t" -- "${dict[@]}" -max_total_time="$secs" \
            -print_final_stats=1 >"$log_dir/$t.log" 2>&1 || echo "$t: FAILED (see $log_dir/$t.log)"
    done
}
run_lane "${targets[@]:0:5}" &
run_lane "${targets[@]:5}" &
wait
for t in "${targets[@]}"; do
    log="$log_dir/$t.log"
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
    cov=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | grep -o 'cov: [0-9]*' | tail -1 || true)
    ft=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | grep -o 'ft: [0-9]*' | tail -1 || true)
    crash=$(grep -l -E 'panicked|deadly signal|ERROR: libFuzzer' "$log" >/dev/null && echo CRASH || echo none)
    echo "$t execs=$execs exec/s=$rate $cov $ft finding=$crash"
done
