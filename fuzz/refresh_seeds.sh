#!/usr/bin/env bash
# Refreshes the committed seed corpora (fuzz/seeds/<target>/) from a longer
# campaign's corpora: merges (libFuzzer -merge=1, with the binaries fuzz/ci.sh
# builds) the current seeds and fuzz/corpus/<target>/ (or the directories
# given) into a minimal set, then drops inputs over MAX_SEED_BYTES (default
# 4096). Review `git status fuzz/seeds` and commit.
#
#   fuzz/refresh_seeds.sh [TARGET...]
#   CORPUS_ROOT=/some/dir fuzz/refresh_seeds.sh   # merges /some/dir/<target>/
set -euo pipefail
cd "$(dirname "$0")"
max_bytes="${MAX_SEED_BYTES:-4096}"
corpus_root="${CORPUS_ROOT:-corpus}"
if [ $# -gt 0 ]; then
    targets=("$@")
else
    targets=(packet extension_fields ke_record ke_client_response ke_server_request
        cookie_open keyset_load roundtrip server_handle refclock interleave config)
fi

bin_dir=$(./ci.sh --build-only "${targets[@]}" | tail -1)
work=$(mktemp -d "${TMPDIR:-/tmp}/sundial-fuzz-seeds.XXXXXX")
trap 'rm -rf "$work"' EXIT

for t in "${targets[@]}"; do
    mkdir -p "$work/$t" "seeds/$t"
    inputs=("seeds/$t")
    [ -d "$corpus_root/$t" ] && inputs+=("$corpus_root/$t")
    "$bin_dir/$t" -merge=1 -timeout=10 -rss_limit_mb=2048 "$work/$t" "${inputs[@]}" \
        >"$work/$t.log" 2>&1 || {
        tail -n 30 "$work/$t.log" >&2
        echo "refresh_seeds: merge failed for $t" >&2
        exit 1
    }
    find "$work/$t" -type f -size +"${max_bytes}c" -delete
    rm -rf "seeds/$t"
    mv "$work/$t" "seeds/$t"
    echo "$t: $(find "seeds/$t" -type f | wc -l) inputs, $(cat "seeds/$t"/* 2>/dev/null | wc -c) bytes"
done
echo "total: $(cat seeds/*/* | wc -c) bytes"
