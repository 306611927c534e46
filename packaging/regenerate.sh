#!/bin/sh
# Remakes the files packaging/ ships that are made from other sources: the
# man pages (from the clap definitions and docs/config.md) and the shell
# completions (from the clap definitions). crates/sundial/tests/man.rs
# fails until this has run and its output is committed.
set -eu
cd "$(dirname "$0")/.."
cargo build -q --locked -p sundial
sundial=target/debug/sundial
[ -n "${CARGO_TARGET_DIR:-}" ] && sundial="$CARGO_TARGET_DIR/debug/sundial"
"$sundial" man --out packaging/man >/dev/null
mkdir -p packaging/completions
"$sundial" completions bash > packaging/completions/sundial.bash
"$sundial" completions zsh > packaging/completions/_sundial
"$sundial" completions fish > packaging/completions/sundial.fish
echo "packaging/man and packaging/completions regenerated"
