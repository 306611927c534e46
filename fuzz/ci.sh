#!/usr/bin/env bash
# CI fuzzing on the stable toolchain: builds every fuzz target with the
# coverage instrumentation cargo-fuzz uses for `--sanitizer none` (stable
# codegen flags only, no nightly, no cargo-fuzz), then runs each target for
# TARGET_SECONDS (default 20) on top of the seed corpus kept in fuzz/seeds/.
#
#   fuzz/ci.sh [TARGET_SECONDS] [TARGET...]   build, then fuzz (all targets by default)
#   fuzz/ci.sh --build-only [TARGET...]       build only; prints the binaries' directory
#
# The checkout is only read: the seeds are copied to a temporary working
# corpus, deleted at exit. Build output goes to fuzz/target-ci (ignored by
# git; separate from fuzz/target so the plain build is not invalidated), or
# $CARGO_TARGET_DIR/fuzz-ci when CARGO_TARGET_DIR is set, or
# $FUZZ_CI_TARGET_DIR.
# Reproducers go to $FUZZ_CI_ARTIFACTS (default: artifacts/ in the build
# directory).
# Exits non-zero if any target crashes (panic, invariant failure, abort), runs
# over -timeout on one input, or goes over -rss_limit_mb, and prints the
# reproducer's path (and the input in base64 when it is small).
set -euo pipefail
# Resolved before the cd below.
target_dir="${FUZZ_CI_TARGET_DIR:-${CARGO_TARGET_DIR:+$CARGO_TARGET_DIR/fuzz-ci}}"
[ -n "$target_dir" ] && target_dir=$(realpath -m -- "$target_dir")
cd "$(dirname "$0")"
fuzz_dir=$(pwd)
target_dir="${target_dir:-$fuzz_dir/target-ci}"

all_targets=(packet extension_fields ke_record ke_client_response ke_server_request
    cookie_open keyset_load roundtrip server_handle refclock interleave config)

usage() {
    echo "usage: fuzz/ci.sh [TARGET_SECONDS] [TARGET...] | fuzz/ci.sh --build-only [TARGET...]" >&2
    exit 2
}
build_only=false
secs=20
if [ "${1:-}" = "--build-only" ]; then
    build_only=true
    shift
elif [ $# -gt 0 ]; then
    secs="$1"
    shift
fi
case "$secs" in '' | *[!0-9]* | 0) usage ;; esac
if [ $# -gt 0 ]; then targets=("$@"); else targets=("${all_targets[@]}"); fi
for t in "${targets[@]}"; do
    [ -f "fuzz_targets/$t.rs" ] || { echo "fuzz/ci.sh: no fuzz target $t" >&2; usage; }
done

triple=$(rustc -vV | sed -n 's/^host: //p')
bin_dir="$target_dir/$triple/release"

# The flags of cargo-fuzz 0.13 (`cargo fuzz build --sanitizer none
# --debug-assertions`, src/project.rs), all stable: SanitizerCoverage with
# inline 8-bit counters, the PC table and compare tracing for libFuzzer,
# `--cfg fuzzing` for libfuzzer-sys, no branch folding, stack depth tracing
# (Linux), debug assertions (and so overflow checks) on, one codegen unit.
rustflags="-Cpasses=sancov-module"
rustflags+=" -Cllvm-args=-sanitizer-coverage-level=4"
rustflags+=" -Cllvm-args=-sanitizer-coverage-inline-8bit-counters"
rustflags+=" -Cllvm-args=-sanitizer-coverage-pc-table"
rustflags+=" -Cllvm-args=-sanitizer-coverage-trace-compares"
rustflags+=" --cfg fuzzing"
rustflags+=" -Cllvm-args=-simplifycfg-branch-fold-threshold=0"
case "$triple" in *-linux-*) rustflags+=" -Cllvm-args=-sanitizer-coverage-stack-depth" ;; esac
rustflags+=" -Cdebug-assertions -Ccodegen-units=1"

echo "== fuzz/ci.sh: instrumented build ($(rustc --version))"
bin_args=()
for t in "${targets[@]}"; do bin_args+=(--bin "$t"); done
# `--target` keeps RUSTFLAGS away from build scripts and proc macros, as with
# cargo-fuzz; the release profile with line tables, as with cargo-fuzz.
RUSTFLAGS="$rustflags${RUSTFLAGS:+ $RUSTFLAGS}" \
    cargo build --manifest-path "$fuzz_dir/Cargo.toml" --locked --release \
    --config 'profile.release.debug="line-tables-only"' \
    --target "$triple" --target-dir "$target_dir" "${bin_args[@]}"

if $build_only; then
    echo "$bin_dir"
    exit 0
fi

artifacts="${FUZZ_CI_ARTIFACTS:-$target_dir/artifacts}"
work=$(mktemp -d "${TMPDIR:-/tmp}/sundial-fuzz-ci.XXXXXX")
trap 'rm -rf "$work"' EXIT

failed=()
summary=()
for t in "${targets[@]}"; do
    corpus="$work/corpus/$t"
    art="$artifacts/$t"
    log="$work/$t.log"
    mkdir -p "$corpus" "$art"
    if [ -d "seeds/$t" ]; then cp -- "seeds/$t"/* "$corpus"/ 2>/dev/null || true; fi
    # Inputs that once found a bug are seeds too.
    for r in regressions/"$t"-*; do [ -f "$r" ] && cp -- "$r" "$corpus/"; done
    seeds=$(find "$corpus" -type f | wc -l)
    ls -A "$art" | sort >"$work/$t.before"

    echo "== fuzz $t: ${secs}s on $seeds seed inputs"
    rc=0
    # The outer timeout only guards against libFuzzer itself not stopping.
    # A target with a dictionary (fuzz/<target>.dict: the config file's key
    # names) gets it, as `cargo fuzz run <target> -- -dict=...` would.
    dict=()
    [ -f "$t.dict" ] && dict=(-dict="$t.dict")
    timeout -k 10 $((secs + 300)) "$bin_dir/$t" "$corpus" "${dict[@]}" \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$art/" -print_final_stats=1 >"$log" 2>&1 || rc=$?

    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
    done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 || true)
    cov=$(grep -o 'cov: [0-9]*' <<<"$done_line" | grep -o '[0-9]*' || true)
    ft=$(grep -o 'ft: [0-9]*' <<<"$done_line" | grep -o '[0-9]*' || true)
    after=$(find "$corpus" -type f | wc -l)

    finding=none
    if grep -q 'ERROR: libFuzzer: timeout' "$log"; then
        finding=timeout
    elif grep -q -E 'ERROR: libFuzzer: out-of-memory|==[0-9]+== ERROR: libFuzzer: malloc' "$log"; then
        finding=oom
    elif grep -q -E 'ERROR: libFuzzer|panicked at|deadly signal' "$log"; then
        finding=crash
    elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        finding="hang (libFuzzer did not stop)"
    elif [ "$rc" -ne 0 ]; then
        finding="exit status $rc"
    fi
    line="$t: execs=${execs:-?} exec/s=${rate:-?} cov=${cov:-?} ft=${ft:-?} corpus=$seeds->$after finding=$finding"
    summary+=("$line")
    echo "$line"
    if [ "$finding" != none ]; then
        failed+=("$t")
        echo "---- $t: last lines of the libFuzzer log" >&2
        tail -n 60 "$log" >&2
        cp -- "$log" "$artifacts/$t.log"
        echo "full log: $artifacts/$t.log" >&2
        mapfile -t new < <(ls -A "$art" | sort | comm -13 "$work/$t.before" -)
        if [ ${#new[@]} -eq 0 ]; then
            echo "no reproducer was written (see the log above)" >&2
        fi
        for f in "${new[@]}"; do
            f="$art/$f"
            echo "reproducer: $f ($(stat -c %s "$f") bytes)" >&2
            if [ "$(stat -c %s "$f")" -le 4096 ]; then
                echo "reproducer (base64): $(base64 -w0 "$f")" >&2
            fi
            echo "replay: $bin_dir/$t $f   (or: cd fuzz && cargo +nightly fuzz run $t $f)" >&2
        done
    fi
done

echo "== fuzz/ci.sh summary (${secs}s per target)"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz/ci.sh: findings in: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz/ci.sh: no findings"
