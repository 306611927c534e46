#!/usr/bin/env bash
# Accuracy bench: how close sundial, chronyd and ntpd-rs keep time over a
# delayed, jittery, lossy, asymmetric path, in one run, on one machine.
#
# Each scenario and seed gets two network namespaces joined by a veth pair:
#   acc-srv-<scenario>-s<seed>: chronyd -x as NTS server (NTP 10.77.0.1:123,
#       NTS-KE 10.77.0.1:4460, its KE answer names the relay 10.77.0.3 as
#       the NTP server) and `sundial bench relay` on 10.77.0.3:123, which
#       delays each datagram per direction (normal, loss, spikes, seeded);
#   acc-cli-<scenario>-s<seed> (10.77.0.2): the clients, sundial run
#       --observe with an NTS source and with a plain NTP source (through
#       the relay), chronyd -x (NTS) and ntpd-rs (NTS, never steering),
#       and sample.py, which reads each client's clock error once a second.
# NTS-KE (TCP) goes over the veth directly; NTP (UDP) goes through the
# relay. Where the kernel has netem (PATH_MODE=netem, or auto), netem on
# the veth draws the normal delays instead and the relay only adds loss
# and spikes. Server and clients share the machine's one clock, which is
# the truth: an error is simply each client's estimate of the time minus
# the real clock. Nothing changes the clock: chronyd runs -x, sundial
# --observe, ntpd-rs without CAP_SYS_TIME, under an LD_PRELOAD shim that
# turns clock-setting calls into no-ops, and with more agreeing sources
# required than it has.
#
# Usage (root: namespaces):  benches/accuracy.sh     (see benches/README.md)
# Knobs: DURATION (600 s per run), SEEDS ("1 2"), SCENARIOS ("sym lossy asym
# default"), STEADY_AFTER (120 s), PARALLEL (4 runs at once), OUT (results
# dir), SUNDIAL (a binary instead of building), PATH_MODE (auto|relay|netem),
# NTPD_RS_ROOT (where ntpd-rs 1.9.0 is cargo-installed if absent), RELAY_RT
# (the relay's SCHED_FIFO priority, 0: none).
# Every process it starts and every namespace it creates is removed on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
HERE=$ROOT/benches/accuracy
DURATION=${DURATION:-600}
SEEDS=${SEEDS:-"1 2"}
SCENARIOS=${SCENARIOS:-"sym lossy asym default"}
STEADY_AFTER=${STEADY_AFTER:-120}
PARALLEL=${PARALLEL:-4}
PATH_MODE=${PATH_MODE:-auto}
RELAY_RT=${RELAY_RT:-20}
OUT=${OUT:-/tmp/sundial-accuracy-$(date +%Y%m%d-%H%M%S)}
NTPD_RS_ROOT=${NTPD_RS_ROOT:-$HOME/.cache/sundial-bench/ntpd-rs}
NTPD_RS_VERSION=1.9.0

[ "$(id -u)" = 0 ] || { echo "accuracy.sh: needs root (network namespaces)" >&2; exit 1; }
for tool in ip gcc python3 setpriv timeout; do
    command -v "$tool" >/dev/null || { echo "accuracy.sh: $tool is missing" >&2; exit 1; }
done
case "$DURATION" in ''|*[!0-9]*) echo "DURATION must be whole seconds" >&2; exit 1;; esac
[ "$DURATION" -ge 30 ] && [ "$DURATION" -le 7200 ] || { echo "DURATION: 30..7200 s" >&2; exit 1; }
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

# Everything we start or create, for the trap. Namespaces are listed in a
# file because the runs are subshells.
NS_LIST=$OUT/.namespaces
PID_LIST=$OUT/.pids
: > "$NS_LIST"; : > "$PID_LIST"
INSTALL_PID=
# client_toml DIR NAME SOURCE POLL_TOML AGREEING: DIR/NAME.toml for a
# client (sundial or ntpd-rs) with one SOURCE section, the poll settings
# and an observation socket DIR/NAME.sock.
client_toml() {
    cat > "$1/$2.toml" <<EOF
$3

$4
[synchronization]
minimum-agreeing-sources = $5

[observability]
observation-path = "$1/$2.sock"
log-level = "info"
EOF
}

cleanup() {
    set +e
    # Processes inside our namespaces (started by this script only), then
    # the ones recorded outside them, then the namespaces and their veths.
    local ns pid
    while read -r ns; do
        [ -n "$ns" ] || continue
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null; done
    done < "$NS_LIST"
    while read -r pid; do [ -n "$pid" ] && kill "$pid" 2>/dev/null; done < "$PID_LIST"
    [ -n "$INSTALL_PID" ] && kill "$INSTALL_PID" 2>/dev/null
    sleep 0.5
    while read -r ns; do
        [ -n "$ns" ] || continue
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
        ip netns del "$ns" 2>/dev/null
    done < "$NS_LIST"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "# $*" >&2; }

# ---------------------------------------------------------------- installs
# ntpd-rs takes minutes to build: start it first, in the background.
NTPD=$(command -v ntp-daemon || true)
NTPCTL=$(command -v ntp-ctl || true)
if [ -z "$NTPD" ] && [ -x "$NTPD_RS_ROOT/bin/ntp-daemon" ]; then
    NTPD=$NTPD_RS_ROOT/bin/ntp-daemon NTPCTL=$NTPD_RS_ROOT/bin/ntp-ctl
fi
if [ -z "$NTPD" ]; then
    log "installing ntpd-rs $NTPD_RS_VERSION into $NTPD_RS_ROOT (background, several minutes)"
    cargo install ntpd --version "$NTPD_RS_VERSION" --locked --root "$NTPD_RS_ROOT" \
        > "$OUT/ntpd-rs-install.log" 2>&1 &
    INSTALL_PID=$!
    NTPD=$NTPD_RS_ROOT/bin/ntp-daemon NTPCTL=$NTPD_RS_ROOT/bin/ntp-ctl
fi

if ! command -v chronyd >/dev/null; then
    log "installing Debian's chrony (service starts forbidden)"
    export DEBIAN_FRONTEND=noninteractive
    policy=/usr/sbin/policy-rc.d created_policy=
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && created_policy=1
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chrony >/dev/null
    [ -n "$created_policy" ] && rm -f "$policy"
    systemctl disable --now chrony >/dev/null 2>&1 || true
    if [ -e /run/chrony/chronyd.pid ]; then kill "$(cat /run/chrony/chronyd.pid)" 2>/dev/null || true; fi
fi
CHRONYD=$(command -v chronyd)
CHRONYC=$(command -v chronyc || true)

if [ -z "${SUNDIAL:-}" ]; then
    log "building sundial (release)"
    (cd "$ROOT" && cargo build --release -q -p sundial)
    SUNDIAL=$ROOT/target/release/sundial
fi
if [ -n "$INSTALL_PID" ]; then
    log "waiting for the ntpd-rs install"
    wait "$INSTALL_PID" || { echo "ntpd-rs install failed: $OUT/ntpd-rs-install.log" >&2; exit 1; }
    INSTALL_PID=
fi
[ -x "$NTPD" ] || { echo "accuracy.sh: no ntp-daemon at $NTPD" >&2; exit 1; }

# The shim: clock-setting calls succeed and do nothing (see noclockset.c).
SHIM_DIR=$(mktemp -d /tmp/sundial-accuracy-shim.XXXXXX)
echo "$SHIM_DIR" > "$OUT/.shimdir"
gcc -shared -fPIC -O2 -o "$SHIM_DIR/noclockset.so" "$HERE/noclockset.c" -ldl
SHIM=$SHIM_DIR/noclockset.so

# One CA and server certificate for every run: each pair of namespaces
# uses the same addresses, isolated from the others.
SERVER_IP=10.77.0.1 CLIENT_IP=10.77.0.2 RELAY_IP=10.77.0.3
"$SUNDIAL" ca --hostname acc-server --ip "$SERVER_IP" --out "$OUT/ca" --force >/dev/null
CA=$OUT/ca/ca.pem CHAIN=$OUT/ca/server-chain.pem KEY=$OUT/ca/server.key

# -------------------------------------------------------------- scenarios
# scenario NAME: sets OUT_MS IN_MS JITTER_MS LOSS SPIKE_PROB SPIKE_MS POLL DESC.
scenario() {
    OUT_MS=5 IN_MS=5 JITTER_MS=1 LOSS=0 SPIKE_PROB=0 SPIKE_MS=50 POLL=fast
    case "$1" in
        sym) DESC="symmetric 5 ± 1 ms each way, fast polling (2^0..2^2 s)" ;;
        lossy) LOSS=0.01 SPIKE_PROB=0.02
            DESC="symmetric 5 ± 1 ms, 1 % loss and 2 % spikes of +50 ms per datagram and direction, fast polling" ;;
        asym) OUT_MS=6 IN_MS=4
            DESC="asymmetric 6 ms out / 4 ms back (± 1 ms), fast polling" ;;
        default) POLL=default
            DESC="symmetric 5 ± 1 ms each way, each client's default poll limits" ;;
        *) echo "unknown scenario $1 (sym lossy asym default)" >&2; return 1 ;;
    esac
}
for s in $SCENARIOS; do scenario "$s"; done

netem_works() {
    local ns=acc-probe-$$
    ip netns add "$ns" && echo "$ns" >> "$NS_LIST"
    ip -n "$ns" link add accprobe0 type dummy 2>/dev/null
    if ip netns exec "$ns" tc qdisc add dev accprobe0 root netem delay 1ms 2>/dev/null; then
        ip netns del "$ns"; return 0
    fi
    ip netns del "$ns"; return 1
}
case "$PATH_MODE" in
    relay) USE_NETEM=0 ;;
    netem) USE_NETEM=1 ;;
    auto) if command -v tc >/dev/null && netem_works; then USE_NETEM=1; else USE_NETEM=0; fi ;;
    *) echo "PATH_MODE: auto, relay or netem" >&2; exit 1 ;;
esac
log "delays drawn by $([ "$USE_NETEM" = 1 ] && echo "netem (loss and spikes by the relay)" || echo "sundial bench relay (this kernel has no netem)")"

# wait_in NS CMD...: until CMD succeeds inside NS, at most 20 s.
wait_in() {
    local ns=$1; shift
    local i
    for i in $(seq 100); do
        ip netns exec "$ns" "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    return 1
}

# start NS LOGFILE CMD...: CMD in NS in the background, pid recorded.
start() {
    local ns=$1 logf=$2; shift 2
    ip netns exec "$ns" "$@" > "$logf" 2>&1 &
    echo $! >> "$PID_LIST"
    LAST_PID=$!
}

# -------------------------------------------------------------- one run
run_one() {
    local name=$1 seed=$2 index=$3
    scenario "$name"
    local tag=$name-s$seed
    local srv=acc-srv-$tag cli=acc-cli-$tag dir=$OUT/$tag
    local vs=accs$index vc=accc$index
    mkdir -p "$dir"/{srv,cli}
    ip netns del "$srv" 2>/dev/null || true
    ip netns del "$cli" 2>/dev/null || true
    ip netns add "$srv"; echo "$srv" >> "$NS_LIST"
    ip netns add "$cli"; echo "$cli" >> "$NS_LIST"
    ip link add "$vs" type veth peer name "$vc"
    ip link set "$vs" netns "$srv"
    ip link set "$vc" netns "$cli"
    ip -n "$srv" addr add "$SERVER_IP/24" dev "$vs"
    ip -n "$srv" addr add "$RELAY_IP/24" dev "$vs"
    ip -n "$cli" addr add "$CLIENT_IP/24" dev "$vc"
    for ns in "$srv" "$cli"; do ip -n "$ns" link set lo up; done
    ip -n "$srv" link set "$vs" up
    ip -n "$cli" link set "$vc" up

    local relay_out=$OUT_MS relay_in=$IN_MS relay_jitter=$JITTER_MS
    if [ "$USE_NETEM" = 1 ]; then
        # netem delays each veth's egress: the server's is the way back.
        ip netns exec "$srv" tc qdisc add dev "$vs" root netem delay "${IN_MS}ms" "${JITTER_MS}ms" distribution normal
        ip netns exec "$cli" tc qdisc add dev "$vc" root netem delay "${OUT_MS}ms" "${JITTER_MS}ms" distribution normal
        relay_out=0 relay_in=0 relay_jitter=0
    fi
    local bias
    bias=$(python3 -c "print(($OUT_MS - $IN_MS) / 2e3)")
    {
        echo "scenario=$name"; echo "seed=$seed"; echo "description=$DESC"
        echo "bias_seconds=$bias"; echo "duration=$DURATION"; echo "netem=$USE_NETEM"
    } > "$dir/meta.txt"

    # The server: chronyd -x, NTS, stratum 1 on its own (= the real) clock.
    mkdir -p "$dir/srv/run" "$dir/srv/nts" "$dir/srv/log"; chmod 700 "$dir/srv/run"
    cat > "$dir/srv/chrony.conf" <<EOF
bindaddress $SERVER_IP
port 123
allow 10.77.0.0/24
local stratum 1
ntsport 4460
ntsservercert $CHAIN
ntsserverkey $KEY
ntsntpserver $RELAY_IP
ntsdumpdir $dir/srv/nts
ntsprocesses 1
cmdport 0
bindcmdaddress $dir/srv/run/chronyd.sock
pidfile $dir/srv/chronyd.pid
logdir $dir/srv/log
EOF
    start "$srv" "$dir/srv/chronyd.out" "$CHRONYD" -x -n -u root -L 0 -l "$dir/srv/chronyd.log" -f "$dir/srv/chrony.conf"
    wait_in "$cli" bash -c "echo > /dev/tcp/$SERVER_IP/4460" || { echo "$tag: NTS-KE server not up" >&2; return 1; }

    # The relay, a little longer than the sampler so it covers the run.
    # Real-time priority (chrt -f) keeps its wake-ups on time when the two
    # cores are busy: its release lateness p99 fell from ~550 to ~80 µs
    # here. It spins at most 200 µs per datagram, a few datagrams a second.
    local rt=()
    [ "$RELAY_RT" -gt 0 ] && command -v chrt >/dev/null && rt=(chrt -f "$RELAY_RT")
    start "$srv" "$dir/relay.out" timeout $((DURATION + 60)) "${rt[@]}" "$SUNDIAL" bench relay \
        --listen "$RELAY_IP:123" --upstream "$SERVER_IP:123" --duration $((DURATION + 8)) \
        --out-delay-ms "$relay_out" --in-delay-ms "$relay_in" --jitter-ms "$relay_jitter" \
        --loss "$LOSS" --spike-prob "$SPIKE_PROB" --spike-ms "$SPIKE_MS" --seed "$seed"
    local relay_pid=$LAST_PID

    # The clients.
    local fast_toml="" chrony_poll=""
    if [ "$POLL" = fast ]; then
        fast_toml=$'[source-defaults]\npoll-interval-limits = { min = 0, max = 2 }\ninitial-poll-interval = 0\n'
        chrony_poll="minpoll 0 maxpoll 2"
    fi
    local c=$dir/cli
    # The same ntp.toml shape serves sundial and ntpd-rs; only the source
    # and the agreement they need differ.
    local nts_source ntp_source
    nts_source=$(printf '[[source]]\nmode = "nts"\naddress = "%s:4460"\ncertificate-authority = "%s"' "$SERVER_IP" "$CA")
    ntp_source=$(printf '[[source]]\nmode = "server"\naddress = "%s:123"' "$RELAY_IP")
    client_toml "$c" sundial-nts "$nts_source" "$fast_toml" 1
    client_toml "$c" sundial-ntp "$ntp_source" "$fast_toml" 1
    # ntpd-rs: two agreeing sources required, one configured: it measures
    # and filters but never steers. Its estimate is read instead.
    client_toml "$c" ntpd-rs "$nts_source" "$fast_toml" 2
    mkdir -p "$c/chrony/run" "$c/chrony/log"; chmod 700 "$c/chrony/run"
    cat > "$c/chrony.conf" <<EOF
server $SERVER_IP nts ntsport 4460 iburst $chrony_poll
ntstrustedcerts $CA
nosystemcert
# The virtual clock it keeps with -x is served here, for sample.py.
port 11123
bindaddress 127.0.0.1
allow 127.0.0.1
cmdport 0
bindcmdaddress $c/chrony/run/chronyd.sock
pidfile $c/chrony/chronyd.pid
logdir $c/chrony/log
log tracking measurements statistics
EOF
    start "$cli" "$c/sundial-nts.log" "$SUNDIAL" run --observe -c "$c/sundial-nts.toml"
    start "$cli" "$c/sundial-ntp.log" "$SUNDIAL" run --observe -c "$c/sundial-ntp.toml"
    start "$cli" "$c/chronyd.out" "$CHRONYD" -x -n -u root -L 0 -l "$c/chronyd.log" -f "$c/chrony.conf"
    start "$cli" "$c/ntpd-rs.log" setpriv --inh-caps=-sys_time --bounding-set=-sys_time \
        env LD_PRELOAD="$SHIM" "$NTPD" -c "$c/ntpd-rs.toml"
    log "$tag: $DESC; $DURATION s"
    ip netns exec "$cli" timeout $((DURATION + 30)) python3 "$HERE/sample.py" --out "$dir/errors.csv" \
        --duration "$DURATION" --sundial "sundial-nts=$c/sundial-nts.sock" \
        --sundial "sundial-ntp=$c/sundial-ntp.sock" --chrony "chronyd=127.0.0.1:11123" \
        --ntpd-rs "ntpd-rs=$c/ntpd-rs.sock" 2> "$dir/sample.err" || true

    # chrony's own view at the end, next to what sample.py measured.
    if [ -n "$CHRONYC" ]; then
        ip netns exec "$cli" "$CHRONYC" -n -h "$c/chrony/run/chronyd.sock" tracking > "$dir/chronyc-tracking.txt" 2>&1 || true
    fi
    ip netns exec "$cli" "$NTPCTL" -c "$c/ntpd-rs.toml" status > "$dir/ntp-ctl-status.txt" 2>&1 || true
    ip netns exec "$cli" "$SUNDIAL" status --socket "$c/sundial-nts.sock" > "$dir/sundial-nts-status.txt" 2>&1 || true
    for pid in $(ip netns pids "$cli"); do kill "$pid" 2>/dev/null || true; done
    wait "$relay_pid" 2>/dev/null || true
    echo "relay=$(grep '^RESULT_RELAY' "$dir/relay.out" | cut -d' ' -f2-)" >> "$dir/meta.txt"
    for pid in $(ip netns pids "$srv"); do kill "$pid" 2>/dev/null || true; done
    sleep 0.5
    ip netns del "$cli" 2>/dev/null || true
    ip netns del "$srv" 2>/dev/null || true
    log "$tag: done"
}

# ------------------------------------------------------------- the runs
# Runs of one seed go in parallel (PARALLEL at a time): the clients send
# about one datagram a second each, far from loading two cores.
runs=()
for seed in $SEEDS; do for s in $SCENARIOS; do runs+=("$s:$seed"); done; done
total=${#runs[@]}
rounds=$(( (total + PARALLEL - 1) / PARALLEL ))
log "$total runs, $PARALLEL at a time: about $(( rounds * (DURATION + 20) / 60 + 1 )) minutes; results in $OUT"
index=0
active=0
for r in "${runs[@]}"; do
    index=$((index + 1))
    if [ "$active" -ge "$PARALLEL" ]; then wait -n || true; active=$((active - 1)); fi
    ( run_one "${r%%:*}" "${r##*:}" "$index" ) &
    active=$((active + 1))
done
wait || true

python3 "$HERE/analyze.py" "$OUT" --steady-after "$STEADY_AFTER" | tee "$OUT/tables.md"
rm -rf "$SHIM_DIR"
echo "results: $OUT (raw per-second CSVs: */errors.csv; tables: tables.md)"
