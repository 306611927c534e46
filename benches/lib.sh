# Shared by compare.sh, interleave.sh and soak.sh (sourced, not run).

# setup_bench: the start every server bench shares (ROOT and OUT set):
# kill what was started (PIDS) at exit, build sundial unless SUNDIAL names
# a binary, and make a throwaway CA for localhost (sets CA, CHAIN, KEY).
setup_bench() {
    PIDS=()
    trap 'for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done' EXIT
    if [ -z "${SUNDIAL:-}" ]; then
        echo "# building sundial (release)" >&2
        (cd "$ROOT" && cargo build --release -q -p sundial)
        SUNDIAL=$ROOT/target/release/sundial
    fi
    "$SUNDIAL" ca --hostname localhost --ip 127.0.0.1 --out "$OUT/ca" --force >/dev/null
    CA=$OUT/ca/ca.pem CHAIN=$OUT/ca/server-chain.pem KEY=$OUT/ca/server.key
}

# wait_tcp PORT: until something listens on 127.0.0.1:PORT, at most 15 s.
wait_tcp() { timeout 15 bash -c "until (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null; do sleep 0.2; done"; }

# write_ntp_toml FILE NTP_PORT KE_PORT CHAIN KEY KEY_DIR: a stratum-1 NTS
# server on loopback. The same file serves sundial and ntpd-rs: sundial
# loads ntpd-rs's configuration unchanged.
write_ntp_toml() {
    cat > "$1" <<EOF
[[server]]
listen = "127.0.0.1:$2"

[[nts-ke-server]]
listen = "127.0.0.1:$3"
certificate-chain-path = "$4"
private-key-path = "$5"

[keyset]
key-storage-path = "$6/ntskeys"

[synchronization]
local-stratum = 1

[observability]
log-level = "warn"
EOF
}

CHRONYD=${CHRONYD:-$(command -v chronyd || echo /usr/sbin/chronyd)}

# start_chronyd DIR CORE NTP_PORT KE_PORT: Debian's chronyd as a stratum-1
# NTP and NTS server on loopback, pinned to CORE, always -x (it never
# touches the clock), with the throwaway CA's certificate; sets PID.
start_chronyd() {
    local dir=$1
    mkdir -p "$dir/run" "$dir/nts" "$dir/log"; chmod 700 "$dir/run"
    cat > "$dir/chrony.conf" <<EOF
bindaddress 127.0.0.1
port $3
allow 127.0.0.0/8
local stratum 1
ntsport $4
ntsservercert $CHAIN
ntsserverkey $KEY
ntsdumpdir $dir/nts
ntsprocesses 1
cmdport 0
bindcmdaddress $dir/run/chronyd.sock
pidfile $dir/chronyd.pid
logdir $dir/log
EOF
    taskset -c "$2" "$CHRONYD" -x -n -u root -L 0 -l "$dir/log/chronyd.log" -f "$dir/chrony.conf" 2> "$dir/stderr" &
    PID=$!
}
