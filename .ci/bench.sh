#!/usr/bin/env bash
# `make bench`: TinyKV-rs and etcd side by side on this machine, in plaintext and with TLS;
# writes docs/benchmarks.md.
#
# 1. builds tinykv-server, tinykv-bench and tinykv-ctl (release);
# 2. installs etcd-server, and wrk for the cross-check, from Debian if missing (root +
#    apt-get only);
# 3. makes a dev CA and certificates for stores 1-3 in the temp dir (tinykv-ctl certs dev);
# 4. starts a fresh 3-node TinyKV-rs cluster on loopback (configs/node1..3.toml with other
#    ports: HTTP 18081-18083, raft 21161-21163; data in a temp dir), runs every workload
#    against it, cross-checks the node leading the keys' region with wrk (if installed),
#    and stops it;
# 5. the same with TLS: a fresh cluster, each config layered with configs/tls/nodeN.toml
#    (HTTPS on the client port, mutual TLS between nodes), tinykv-bench with --cacert;
# 6. does the same with a fresh 3-member etcd cluster (clients 12379/22379/32379, peers
#    12380/22380/32380; etcd's default fsync of its WAL is kept), plaintext, then with
#    client TLS and peer mutual TLS (member N uses store N's certificate);
# 7. writes docs/benchmarks.md from the runs' --json results (`tinykv-bench compare`).
# One cluster runs at a time, so no two ever compete for the machine's cores.
#
# Knobs (environment): BENCH_DURATION (20s), BENCH_WARMUP (3s), BENCH_CLIENTS (64),
# BENCH_KEYS (10000), BENCH_VALUE_SIZE (128), BENCH_WORKLOADS ("write a b c transfer"),
# BENCH_OUT (docs/benchmarks.md), BENCH_SKIP_ETCD (0), BENCH_SKIP_TLS (0),
# BENCH_SKIP_WRK (0), BENCH_WRK_DURATION (10s), BENCH_KEEP (0: delete the temp dir with
# logs and JSON results at the end; it is always kept if something failed), BENCH_SERVER
# (target/release/tinykv-server: another build of the server, for A/B runs). In plaintext
# only, after the workloads: BENCH_WIDE_WORKLOADS ("write c", empty for none) again with
# BENCH_WIDE_CLIENTS (256) clients; write-only runs of BENCH_SWEEP_DURATION (10s) for each
# of BENCH_VALUE_SIZES ("128 4096 65536 1048576", empty for none), over at most
# BENCH_SWEEP_BYTES (256 MiB) of keys; then 128-byte writes beside BENCH_BIG_CLIENTS (8)
# clients writing 1 MiB values; and the servers' peak memory.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

CARGO=${CARGO:-cargo}
BENCH_DURATION=${BENCH_DURATION:-20s}
BENCH_WARMUP=${BENCH_WARMUP:-3s}
BENCH_CLIENTS=${BENCH_CLIENTS:-64}
BENCH_KEYS=${BENCH_KEYS:-10000}
BENCH_VALUE_SIZE=${BENCH_VALUE_SIZE:-128}
BENCH_WORKLOADS=${BENCH_WORKLOADS:-write a b c transfer}
BENCH_OUT=${BENCH_OUT:-docs/benchmarks.md}
BENCH_SKIP_ETCD=${BENCH_SKIP_ETCD:-0}
BENCH_SKIP_TLS=${BENCH_SKIP_TLS:-0}
BENCH_SKIP_WRK=${BENCH_SKIP_WRK:-0}
BENCH_WRK_DURATION=${BENCH_WRK_DURATION:-10s}
BENCH_KEEP=${BENCH_KEEP:-0}
BENCH_WIDE_CLIENTS=${BENCH_WIDE_CLIENTS:-256}
BENCH_WIDE_WORKLOADS=${BENCH_WIDE_WORKLOADS-write c}
BENCH_VALUE_SIZES=${BENCH_VALUE_SIZES-128 4096 65536 1048576}
BENCH_SWEEP_DURATION=${BENCH_SWEEP_DURATION:-10s}
BENCH_SWEEP_BYTES=${BENCH_SWEEP_BYTES:-268435456}   # a value size's key space holds at most this much
BENCH_BIG_CLIENTS=${BENCH_BIG_CLIENTS:-8}            # 1 MiB writers beside the small ones
SEED=42
TLS_BUDGET=15   # percent of TinyKV-rs's plaintext throughput TLS may cost (the issue's target)

SERVER=${BENCH_SERVER:-target/release/tinykv-server}
BENCH=target/release/tinykv-bench
CTL=target/release/tinykv-ctl
TINYKV_HTTP=(18081 18082 18083)
TINYKV_RAFT=(21161 21162 21163)
ETCD_CLIENT=(12379 22379 32379)
ETCD_PEER=(12380 22380 32380)
NPROC=$(nproc)
CLK_TCK=$(getconf CLK_TCK)

log() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- processes and cleanup
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tinykv-bench.XXXXXX")
PIDS=()
OK=0

stop_all() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  PIDS=()
}

cleanup() {
  stop_all
  if [ "$OK" = 1 ] && [ "$BENCH_KEEP" != 1 ]; then
    rm -rf "$WORK"
  else
    echo "bench: logs and results kept in $WORK" >&2
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
ALL_PORTS=("${TINYKV_HTTP[@]}" "${TINYKV_RAFT[@]}" "${ETCD_CLIENT[@]}" "${ETCD_PEER[@]}")
ports_free() {
  local port
  for port in "${ALL_PORTS[@]}"; do
    if port_in_use "$port"; then return 1; fi
  done
}

# Waits until "$@" succeeds, for at most $1 seconds.
wait_for() {
  local deadline=$(( $(date +%s) + $1 )); shift
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.5
  done
}

join_by() { local IFS=$1; shift; echo "$*"; }

# Prints its arguments as a shell command line, quoting only the ones that need it.
shquote() {
  local out=() a q="'"
  for a in "$@"; do
    if [[ $a =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then out+=("$a"); else out+=("$q${a//$q/$q\\$q$q}$q"); fi
  done
  echo "${out[*]}"
}

# Installs a Debian package when running as root with apt-get (apt-get update once).
APT_UPDATED=0
apt_install() {
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 || return 1
  if [ "$APT_UPDATED" != 1 ]; then
    apt-get update -qq || return 1
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null
}

# CPU time (user + system, clock ticks) the running servers (PIDS) have used so far.
server_ticks() {
  local pid stat total=0 f
  for pid in "${PIDS[@]}"; do
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
    # After "pid (comm) " the fields are numbered from 3 (state): utime is 14, stime 15.
    read -r -a f <<< "${stat##*) }"
    total=$(( total + f[11] + f[12] ))
  done
  echo "$total"
}

# CPU time (clock ticks) the whole machine has spent busy (not idle, not waiting for I/O).
machine_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }

# TCP connections accepted on this machine so far (loopback included).
tcp_accepts() {
  awk '$1 == "Tcp:" { if (!n) { for (i = 2; i <= NF; i++) if ($i == "PassiveOpens") col = i; n = 1 } else { print $col; exit } }' \
    /proc/net/snmp
}

# Runs one load generator: measure NAME CMD...: its stdout goes to $WORK/results/NAME.txt
# (and the log), its wall-clock and CPU time (bash's `time`) to NAME.time as
# "wall user sys" seconds, and over the same span to NAME.servers: the servers' CPU
# seconds, the whole machine's busy CPU seconds and the TCP connections accepted.
measure() {
  local name=$WORK/results/$1; shift
  local servers machine accepts TIMEFORMAT='%3R %3U %3S'
  servers=$(server_ticks); machine=$(machine_ticks); accepts=$(tcp_accepts)
  { time "$@" > "$name.txt" 2>&4; } 4>&2 2> "$name.time"
  servers=$(( $(server_ticks) - servers )); machine=$(( $(machine_ticks) - machine ))
  accepts=$(( $(tcp_accepts) - accepts ))
  awk -v s="$servers" -v m="$machine" -v a="$accepts" -v hz="$CLK_TCK" \
    'BEGIN { printf "%.2f %.2f %d\n", s / hz, m / hz, a }' > "$name.servers"
  cat "$name.txt"
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
declare -A LOAD_AT   # the load average when each cluster was started, by run key

# ---------------------------------------------------------------- build
log "building tinykv-server, tinykv-bench and tinykv-ctl (release)"
nice -n 10 "$CARGO" build --release --bin tinykv-server --bin tinykv-bench --bin tinykv-ctl

# ---------------------------------------------------------------- etcd and wrk
ETCD_VERSION=""
ETCD_GO=""
if [ "$BENCH_SKIP_ETCD" != 1 ]; then
  if ! command -v etcd >/dev/null 2>&1; then
    log "etcd is missing: installing Debian's etcd-server"
    apt_install etcd-server || echo "bench: could not install etcd-server" >&2
  fi
  if command -v etcd >/dev/null 2>&1; then
    ETCD_VERSION=$(etcd --version | sed -n 's/^etcd Version: //p')
    ETCD_GO=$(etcd --version | sed -n 's/^Go Version: //p')
    case "$ETCD_VERSION" in
      3.4.*|3.5.*) ;;
      *) echo "bench: etcd $ETCD_VERSION is neither 3.4.x nor 3.5.x; its JSON gateway may differ" >&2 ;;
    esac
  else
    echo "bench: etcd is not available: only TinyKV-rs is measured" >&2
    BENCH_SKIP_ETCD=1
  fi
fi

WRK_VERSION=""
if [ "$BENCH_SKIP_WRK" != 1 ]; then
  if ! command -v wrk >/dev/null 2>&1; then
    log "wrk is missing: installing Debian's wrk"
    apt_install wrk || echo "bench: could not install wrk" >&2
  fi
  if command -v wrk >/dev/null 2>&1; then
    if command -v dpkg-query >/dev/null 2>&1 && dpkg-query -W -f '${Version}' wrk >/dev/null 2>&1; then
      WRK_VERSION="$(dpkg-query -W -f '${Version}' wrk) (Debian package wrk)"
    else
      WRK_VERSION=$( (wrk -v 2>&1 || true) | awk 'NR == 1 { print $2 }')
    fi
  else
    echo "bench: wrk is not available: no cross-check" >&2
    BENCH_SKIP_WRK=1
  fi
fi

ports_free || die "one of the ports ${ALL_PORTS[*]} is in use on 127.0.0.1"

mkdir -p "$WORK/results" "$WORK/logs"
COMMANDS="$WORK/commands.txt"
: > "$COMMANDS"
: > "$WORK/servers.txt"

CERTS="$WORK/certs"
if [ "$BENCH_SKIP_TLS" != 1 ]; then
  log "making a dev CA and certificates for stores 1-3 in $CERTS"
  "$CTL" certs dev --dir "$CERTS" --stores 1,2,3
  echo "target/release/tinykv-ctl certs dev --dir \$TMP/certs --stores 1,2,3" >> "$WORK/servers.txt"
fi

# Runs one workload against one system:
#   run_workload TARGET RUN LABEL ENDPOINTS WORKLOAD [TLS OPTIONS...]
# RUN names the results: $WORK/results/RUN-WORKLOAD.json (.txt, .time, .servers).
run_workload() {
  local target=$1 run=$2 label=$3 endpoints=$4 workload=$5; shift 5
  run_bench "$run-$workload" "$target" "$label" "$endpoints" "$workload" "$BENCH_CLIENTS" \
    "$BENCH_VALUE_SIZE" "$BENCH_KEYS" "$BENCH_DURATION" "$@"
}

# One tinykv-bench run, results in $WORK/results/NAME.*:
#   run_bench NAME TARGET LABEL ENDPOINTS WORKLOAD CLIENTS VALUE_SIZE KEYS DURATION [OPTIONS...]
run_bench() {
  local name=$1 target=$2 label=$3 endpoints=$4 workload=$5 clients=$6 size=$7 keys=$8 duration=$9
  shift 9
  local args=(--target "$target" --label "$label" --endpoints "$endpoints" "$@"
    --clients "$clients" --duration "$duration" --warmup "$BENCH_WARMUP"
    --keys "$keys" --value-size "$size" --workload "$workload" --seed "$SEED")
  case "$workload" in write|transfer) ;; *) args+=(--preload) ;; esac
  shquote "$BENCH" "${args[@]}" --json "$WORK/results/$name.json" >> "$COMMANDS"
  log "$label: workload $workload, $clients clients, $size-byte values, $keys keys"
  measure "$name" "$BENCH" "${args[@]}" --json "$WORK/results/$name.json"
}

# The servers' peak resident memory so far (VmHWM, MiB), one number per node.
peak_rss() {
  local pid out=()
  for pid in "${PIDS[@]}"; do
    out+=("$(awk '/^VmHWM:/ { printf "%.0f", $2 / 1024 }' "/proc/$pid/status" 2>/dev/null || echo "?")")
  done
  local IFS=/
  echo "${out[*]}" | sed 's#/# / #g'
}
declare -A PEAK_RSS   # by "RUN base" and "RUN sweep"

# The plaintext extras (see the knobs above): more clients, larger values, small writes
# beside large ones, and the servers' peak memory before and after.
#   run_extras TARGET RUN LABEL ENDPOINTS
run_extras() {
  local target=$1 run=$2 label=$3 endpoints=$4 workload size keys big_pid
  PEAK_RSS["$run base"]=$(peak_rss)
  for workload in $BENCH_WIDE_WORKLOADS; do
    run_bench "$run-$workload-wide" "$target" "$label" "$endpoints" "$workload" \
      "$BENCH_WIDE_CLIENTS" "$BENCH_VALUE_SIZE" "$BENCH_KEYS" "$BENCH_DURATION"
  done
  for size in $BENCH_VALUE_SIZES; do
    keys=$(( BENCH_SWEEP_BYTES / size ))
    if [ "$keys" -gt "$BENCH_KEYS" ]; then keys=$BENCH_KEYS; fi
    if [ "$keys" -lt 16 ]; then keys=16; fi
    run_bench "$run-size-$size" "$target" "$label" "$endpoints" write "$BENCH_CLIENTS" \
      "$size" "$keys" "$BENCH_SWEEP_DURATION"
  done
  if [ -n "$BENCH_VALUE_SIZES" ] && [ "$BENCH_BIG_CLIENTS" -gt 0 ]; then
    # The 1 MiB writers start first and stop after the small writers have finished.
    log "$label: $BENCH_BIG_CLIENTS clients writing 1 MiB values, beside 128-byte writes"
    local big=(--target "$target" --label "$label" --endpoints "$endpoints" --quiet
      --clients "$BENCH_BIG_CLIENTS" --warmup 0s --keys 64 --key-prefix bench-big-
      --value-size 1048576 --workload write --seed "$SEED"
      --duration "$(( ${BENCH_SWEEP_DURATION%s} + ${BENCH_WARMUP%s} + 4 ))s")
    shquote "$BENCH" "${big[@]}" --json "$WORK/results/$run-big.json" "&" >> "$COMMANDS"
    "$BENCH" "${big[@]}" --json "$WORK/results/$run-big.json" > "$WORK/results/$run-big.txt" 2>&1 &
    big_pid=$!
    sleep 2
    run_bench "$run-beside-big" "$target" "$label" "$endpoints" write "$BENCH_CLIENTS" \
      128 "$BENCH_KEYS" "$BENCH_SWEEP_DURATION"
    wait "$big_pid" || die "the 1 MiB writers failed: $(tail -3 "$WORK/results/$run-big.txt")"
  fi
  PEAK_RSS["$run sweep"]=$(peak_rss)
}

# Sets WRK_ENDPOINT to the client URL of the node that leads the region holding the
# benchmark's keys (the one whose range starts at the empty key), so that both wrk runs
# load a node in the same role (a leader serves a read itself, a follower forwards it);
# node 1 if that cannot be told (needs jq). WRK_NODE[RUN] says which it was.
declare -A WRK_NODE
pick_wrk_node() {
  local run=$1 store=""
  if command -v jq >/dev/null 2>&1; then
    store=$(curl -fsS "${CURL_TLS[@]}" "${ENDPOINTS[0]}/v1/admin/regions" 2>/dev/null \
      | jq -r '.regions[] | select(.start_key == "") | .leader.store_id // empty' 2>/dev/null) || store=""
  fi
  case "$store" in
    1|2|3)
      WRK_ENDPOINT=${ENDPOINTS[$((store - 1))]}
      WRK_NODE[$run]="node $store, the leader" ;;
    *)
      WRK_ENDPOINT=${ENDPOINTS[0]}
      WRK_NODE[$run]="node 1, leader or not unknown" ;;
  esac
}

# The wrk cross-check against one TinyKV-rs node: GETs of one preloaded key
# (WRK_KEY, the key tinykv-bench names with --key-prefix bench-wrk --keys 1).
#   run_wrk RUN ENDPOINT [CURL TLS OPTIONS...]
WRK_KEY=bench-wrk0
run_wrk() {
  local run=$1 endpoint=$2; shift 2
  local url="$endpoint/v1/kv/$WRK_KEY"
  curl -fsS "$@" -X PUT --data-binary "$(head -c "$BENCH_VALUE_SIZE" /dev/zero | tr '\0' v)" "$url" >/dev/null \
    || die "cannot write the wrk key at $url"
  local args=(-t2 -c64 -d"$BENCH_WRK_DURATION" --latency "$url")
  echo "curl$( [ $# -gt 0 ] && echo " $(shquote "$@")") -X PUT --data-binary \"\$(head -c $BENCH_VALUE_SIZE /dev/zero | tr '\\0' v)\" $url" >> "$COMMANDS"
  shquote wrk "${args[@]}" >> "$COMMANDS"
  log "wrk: GET $url"
  measure "wrk-$run" wrk "${args[@]}"
}

# tinykv-bench sending wrk's request: the same key, node, connections and duration, no
# warm-up (wrk has none), so that the two clients' throughput and CPU compare directly.
#   run_bench_as_wrk RUN ENDPOINT [TINYKV-BENCH TLS OPTIONS...]
run_bench_as_wrk() {
  local run=$1 endpoint=$2; shift 2
  local args=(--label "tinykv-bench" --endpoints "$endpoint" "$@" --clients 64
    --duration "$BENCH_WRK_DURATION" --warmup 0s --keys 1 --key-prefix bench-wrk
    --value-size "$BENCH_VALUE_SIZE" --workload c --seed "$SEED")
  shquote "$BENCH" "${args[@]}" --json "$WORK/results/bench-as-wrk-$run.json" >> "$COMMANDS"
  log "tinykv-bench: wrk's request, GET $endpoint/v1/kv/$WRK_KEY"
  measure "bench-as-wrk-$run" "$BENCH" "${args[@]}" --json "$WORK/results/bench-as-wrk-$run.json"
}

# ---------------------------------------------------------------- clusters
# Each start_* function starts a fresh cluster in $WORK/RUN (RUN: tinykv, tinykv-tls, etcd,
# etcd-tls), waits until every node answers /health and accepts a write, and sets
# ENDPOINTS (its client URLs), CURL_TLS and BENCH_TLS (the TLS options of curl and
# tinykv-bench, empty in plaintext).
ENDPOINTS=()
CURL_TLS=()
BENCH_TLS=()

# start_tinykv RUN [tls]
start_tinykv() {
  local run=$1 tls=${2:-} scheme=http n conf overlay config_args e
  ENDPOINTS=(); CURL_TLS=(); BENCH_TLS=()
  if [ -n "$tls" ]; then
    scheme=https
    CURL_TLS=(--cacert "$CERTS/ca.pem")
    BENCH_TLS=(--cacert "$CERTS/ca.pem")
  fi
  wait_for 60 ports_free || die "the previous cluster's ports are still in use"
  sync   # the build's (and the previous cluster's) dirty pages, not this cluster's fsyncs
  LOAD_AT[$run]=$(cut -d' ' -f1-3 /proc/loadavg)
  log "starting a 3-node TinyKV-rs cluster${tls:+ with TLS} in $WORK/$run"
  mkdir -p "$WORK/$run"
  for n in 1 2 3; do
    conf="$WORK/$run/node$n.toml"
    sed -e "s#^data_dir = .*#data_dir = \"$WORK/$run/node$n\"#" \
        -e 's/127\.0\.0\.1:2016\([1-3]\)/127.0.0.1:2116\1/' \
        -e 's/127\.0\.0\.1:808\([1-3]\)/127.0.0.1:1808\1/' \
        "configs/node$n.toml" > "$conf"
    config_args=(--config "$conf")
    # The same steps, as docs/benchmarks.md shows them.
    sed -e "s/@N@/$n/g" -e "s/@R@/$run/g" >> "$WORK/servers.txt" <<'EOF'
sed -e "s#^data_dir = .*#data_dir = \"$TMP/@R@/node@N@\"#" -e 's/127\.0\.0\.1:2016\([1-3]\)/127.0.0.1:2116\1/' -e 's/127\.0\.0\.1:808\([1-3]\)/127.0.0.1:1808\1/' configs/node@N@.toml > $TMP/@R@/node@N@.toml
EOF
    if [ -n "$tls" ]; then
      # configs/tls/nodeN.toml, with its certificate paths pointing at the temp dir.
      overlay="$WORK/$run/tls$n.toml"
      sed -e "s#\"certs/#\"$CERTS/#" "configs/tls/node$n.toml" > "$overlay"
      config_args+=(--config "$overlay")
      sed -e "s/@N@/$n/g" -e "s/@R@/$run/g" >> "$WORK/servers.txt" <<'EOF'
sed -e "s#\"certs/#\"$TMP/certs/#" configs/tls/node@N@.toml > $TMP/@R@/tls@N@.toml
target/release/tinykv-server --config $TMP/@R@/node@N@.toml --config $TMP/@R@/tls@N@.toml > $TMP/@R@@N@.log 2>&1 &
EOF
    else
      sed -e "s/@N@/$n/g" -e "s/@R@/$run/g" >> "$WORK/servers.txt" <<'EOF'
target/release/tinykv-server --config $TMP/@R@/node@N@.toml > $TMP/@R@@N@.log 2>&1 &
EOF
    fi
    "$SERVER" "${config_args[@]}" > "$WORK/logs/$run$n.log" 2>&1 &
    PIDS+=($!)
    ENDPOINTS+=("$scheme://127.0.0.1:${TINYKV_HTTP[$((n-1))]}")
  done
  for e in "${ENDPOINTS[@]}"; do
    wait_for 60 curl -fsS "${CURL_TLS[@]}" "$e/health" \
      || die "TinyKV-rs node $e did not become healthy (see $WORK/logs)"
  done
  for e in "${ENDPOINTS[@]}"; do
    wait_for 60 curl -fsS "${CURL_TLS[@]}" -X PUT --data-binary ready "$e/v1/kv/bench-ready" \
      || die "TinyKV-rs at $e does not accept writes (see $WORK/logs)"
  done
}

etcd_healthy() { curl -fsS "${CURL_TLS[@]}" "$1/health" | grep -q '"health":"true"'; }
etcd_put() { curl -fsS "${CURL_TLS[@]}" -X POST -d '{"key":"YmVuY2gtcmVhZHk=","value":"cmVhZHk="}' "$1/v3/kv/put"; }

# start_etcd RUN [tls]
start_etcd() {
  local run=$1 tls=${2:-} scheme=http n client peer cluster args e
  ENDPOINTS=(); CURL_TLS=(); BENCH_TLS=()
  if [ -n "$tls" ]; then
    scheme=https
    # etcd 3.4 asks every client for a certificate once --trusted-ca-file is set, even
    # without --client-cert-auth: clients show user admin's.
    CURL_TLS=(--cacert "$CERTS/ca.pem" --cert "$CERTS/user-admin.pem" --key "$CERTS/user-admin.key")
    BENCH_TLS=(--cacert "$CERTS/ca.pem" --cert "$CERTS/user-admin.pem" --key "$CERTS/user-admin.key")
  fi
  wait_for 60 ports_free || die "the previous cluster's ports are still in use"
  sync   # the build's (and the previous cluster's) dirty pages, not this cluster's fsyncs
  LOAD_AT[$run]=$(cut -d' ' -f1-3 /proc/loadavg)
  log "starting a 3-member etcd $ETCD_VERSION cluster${tls:+ with TLS} in $WORK/$run"
  cluster="e1=$scheme://127.0.0.1:${ETCD_PEER[0]},e2=$scheme://127.0.0.1:${ETCD_PEER[1]},e3=$scheme://127.0.0.1:${ETCD_PEER[2]}"
  for n in 1 2 3; do
    client="$scheme://127.0.0.1:${ETCD_CLIENT[$((n-1))]}"
    peer="$scheme://127.0.0.1:${ETCD_PEER[$((n-1))]}"
    args=(--name "e$n" --data-dir "$WORK/$run/e$n"
      --listen-client-urls "$client" --advertise-client-urls "$client"
      --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer"
      --initial-cluster "$cluster" --initial-cluster-state new
      --initial-cluster-token tinykv-bench --logger zap --log-outputs stderr
      # The value-size sweep writes gigabytes of history, beyond etcd's default 2 GiB
      # quota (writes then fail with "database space exceeded"): 8 GiB, its largest
      # recommended quota, as an operator storing large values would set.
      --quota-backend-bytes 8589934592)
    if [ -n "$tls" ]; then
      # Member N: store N's certificate, for its clients and (mutual TLS) its peers.
      args+=(--cert-file "$CERTS/store-$n.pem" --key-file "$CERTS/store-$n.key"
        --trusted-ca-file "$CERTS/ca.pem"
        --peer-cert-file "$CERTS/store-$n.pem" --peer-key-file "$CERTS/store-$n.key"
        --peer-trusted-ca-file "$CERTS/ca.pem" --peer-client-cert-auth)
    fi
    echo "$(shquote etcd "${args[@]}") > \$TMP/$run$n.log 2>&1 &" >> "$WORK/servers.txt"
    etcd "${args[@]}" > "$WORK/logs/$run$n.log" 2>&1 &
    PIDS+=($!)
    ENDPOINTS+=("$client")
  done
  for e in "${ENDPOINTS[@]}"; do
    wait_for 60 etcd_healthy "$e" || die "etcd member $e did not become healthy (see $WORK/logs)"
    wait_for 60 etcd_put "$e" || die "etcd at $e does not accept writes (see $WORK/logs)"
  done
}

# ---------------------------------------------------------------- TinyKV-rs
RUNS=(tinykv)
if [ "$BENCH_SKIP_TLS" != 1 ]; then RUNS+=(tinykv-tls); fi
for run in "${RUNS[@]}"; do
  if [ "$run" = tinykv ]; then
    start_tinykv "$run"; label="TinyKV-rs"
  else
    start_tinykv "$run" tls; label="TinyKV-rs TLS"
  fi
  TINYKV_VERSION=$("$SERVER" --version 2>/dev/null || echo "tinykv-server")
  for workload in $BENCH_WORKLOADS; do
    run_workload tinykv "$run" "$label" "$(join_by , "${ENDPOINTS[@]}")" "$workload" "${BENCH_TLS[@]}"
  done
  if [ "$BENCH_SKIP_WRK" != 1 ]; then
    pick_wrk_node "$run"
    run_wrk "$run" "$WRK_ENDPOINT" "${CURL_TLS[@]}"
    run_bench_as_wrk "$run" "$WRK_ENDPOINT" "${BENCH_TLS[@]}"
  fi
  if [ "$run" = tinykv ]; then
    run_extras tinykv "$run" "$label" "$(join_by , "${ENDPOINTS[@]}")"
  fi
  log "stopping $label"
  stop_all
done

# ---------------------------------------------------------------- etcd
ETCD_LABEL="etcd"
if [ "$BENCH_SKIP_ETCD" != 1 ]; then
  ETCD_LABEL="etcd $ETCD_VERSION"
  RUNS=(etcd)
  if [ "$BENCH_SKIP_TLS" != 1 ]; then RUNS+=(etcd-tls); fi
  for run in "${RUNS[@]}"; do
    if [ "$run" = etcd ]; then
      start_etcd "$run"; label="$ETCD_LABEL"
    else
      start_etcd "$run" tls; label="$ETCD_LABEL TLS"
    fi
    for workload in $BENCH_WORKLOADS; do
      run_workload etcd "$run" "$label" "$(join_by , "${ENDPOINTS[@]}")" "$workload" "${BENCH_TLS[@]}"
    done
    if [ "$run" = etcd ]; then
      run_extras etcd "$run" "$label" "$(join_by , "${ENDPOINTS[@]}")"
    fi
    log "stopping $label"
    stop_all
  done
fi
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- docs/benchmarks.md
log "writing $BENCH_OUT"
title_of() {
  case "$1" in
    write) echo "Write-only (100% writes)" ;;
    a) echo "YCSB-A (50% reads, 50% updates)" ;;
    b) echo "YCSB-B (95% reads, 5% updates)" ;;
    c) echo "YCSB-C (100% reads)" ;;
    transfer) echo "Transfers in transactions (2 random keys, compare both versions)" ;;
    *) echo "Workload $1" ;;
  esac
}
# Fields of the "all" row of a tinykv-bench --json result, in the order named, on one
# line: all_fields FILE FIELD... (e.g. throughput p99_ms errors).
all_fields() {
  local file=$1; shift
  awk -F': ' -v keys="$*" '/"op": "all"/ { all = 1 }
    all && /^ *"[a-z0-9_]+": / { key = $1; gsub(/[ "]/, "", key); v = $2; gsub(/[^0-9.]/, "", v); n[key] = v }
    all && /}/ { exit }
    END { k = split(keys, names, " "); for (i = 1; i <= k; i++) printf "%s%s", n[names[i]], (i < k ? " " : "\n") }' "$file"
}
# The throughput of a --json result: successful operations per second, of every kind.
throughput_of() { all_fields "$1" throughput; }
# "wall s | CPU s | its share | servers' share | others' share | idle | TCP accepts" of
# the results NAME (see measure).
cpu_cells() {
  awk -v n="$NPROC" 'NR == FNR { wall = $1; own = $2 + $3; next }
    { srv = $1; busy = $2; accepts = $3 }
    END {
      all = wall * n; others = busy - own - srv; if (others < 0) others = 0
      idle = all - busy; if (idle < 0) idle = 0
      printf "%.1f | %.1f | %.0f%% | %.0f%% | %.0f%% | %.0f%% | %d", wall, own, 100 * own / all,
        100 * srv / all, 100 * others / all, 100 * idle / all, accepts }' \
    "$WORK/results/$1.time" "$WORK/results/$1.servers"
}
# Percent of the machine's CPU tinykv-bench (or wrk) used in the results NAME.
own_share() { awk -v n="$NPROC" '{ printf "%.0f%%", 100 * ($2 + $3) / ($1 * n) }' "$WORK/results/$1.time"; }
server_share() {
  awk -v n="$NPROC" 'NR == FNR { wall = $1; next } { printf "%.0f%%", 100 * $1 / (wall * n) }' \
    "$WORK/results/$1.time" "$WORK/results/$1.servers"
}
# wrk's numbers (--latency output in NAME.txt) as "rps avg p50 p75 p90 p99 max errors",
# latencies in ms.
wrk_numbers() {
  awk 'function ms(v) {
         if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0
         if (v ~ /m$/) return v * 60000; if (v ~ /s$/) return v * 1000; return v + 0 }
       $1 == "Latency" && NF >= 5 { avg = ms($2); max = ms($4) }
       $1 == "50%" { p50 = ms($2) } $1 == "75%" { p75 = ms($2) }
       $1 == "90%" { p90 = ms($2) } $1 == "99%" { p99 = ms($2) }
       /Requests\/sec:/ { rps = $2 }
       /Non-2xx or 3xx responses:/ { errors += $NF }
       /Socket errors:/ { for (i = 3; i <= NF; i++) { v = $i; gsub(/[^0-9]/, "", v); if (v != "") errors += v } }
       END { printf "%.0f %.3f %.3f %.3f %.3f %.3f %.3f %d\n", rps, avg, p50, p75, p90, p99, max, errors }' \
    "$WORK/results/$1.txt"
}

# The "all" row of a tinykv-bench --json result as "rps mean p50 p99 max errors" (ms).
bench_numbers() {
  all_fields "$1" throughput mean_ms p50_ms p99_ms max_ms errors \
    | awk '{ $1 = sprintf("%.0f", $1); print }'
}

# "ops/s MiB/s p50 p99 p99.9 max errors" of the "all" row of a --json result (ms), given
# its value size in bytes.
bench_row() {
  all_fields "$1" throughput p50_ms p99_ms p999_ms max_ms errors \
    | awk -v size="$2" '{ printf "%.0f %.1f %s %s %s %s %s\n", $1, $1 * size / 1048576, $2, $3, $4, $5, $6 }'
}

# The section of the plaintext extras (run_extras), for whichever ran.
extras_section() {
  local workload size run name
  [ -n "$BENCH_WIDE_WORKLOADS$BENCH_VALUE_SIZES" ] || return 0
  cat <<EOF
## More clients, larger values (plaintext)

After the workloads above, each plaintext cluster runs more: the workloads
${BENCH_WIDE_WORKLOADS:-(none)} again with ${BENCH_WIDE_CLIENTS} clients instead of ${BENCH_CLIENTS}; write-only runs of
${BENCH_SWEEP_DURATION} (after the ${BENCH_WARMUP} warm-up) with each value size, over as many keys as
hold ${BENCH_SWEEP_BYTES} bytes (at most ${BENCH_KEYS}); then ${BENCH_CLIENTS} clients writing 128-byte
values while ${BENCH_BIG_CLIENTS} more write 1 MiB values, to see whether large values stall small
ones. The last table gives each node's peak resident memory (\`VmHWM\`) after the
workloads above and after these runs.

EOF
  for workload in $BENCH_WIDE_WORKLOADS; do
    [ -f "$WORK/results/tinykv-$workload-wide.json" ] || continue
    compare_pair "$WORK/results/tinykv-$workload-wide.json" "$WORK/results/etcd-$workload-wide.json" \
      "$(title_of "$workload"), ${BENCH_WIDE_CLIENTS} clients"
  done
  if [ -n "$BENCH_VALUE_SIZES" ]; then
    printf '### Value sizes (write-only, %s clients)\n\n' "$BENCH_CLIENTS"
    echo "| value size | system | writes/s | MiB/s | p50 ms | p99 ms | p99.9 ms | max ms | errors |"
    echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|"
    for size in $BENCH_VALUE_SIZES; do
      for run in tinykv etcd; do
        name="$WORK/results/$run-size-$size.json"
        [ -f "$name" ] || continue
        read -r ops mib p50 p99 p999 max errors <<< "$(bench_row "$name" "$size")"
        echo "| $size B | $(run_title "$run") | $ops | $mib | $p50 | $p99 | $p999 | $max | $errors |"
      done
      if [ -f "$WORK/results/tinykv-size-$size.json" ] && [ -f "$WORK/results/etcd-size-$size.json" ]; then
        paste -d' ' <(bench_row "$WORK/results/tinykv-size-$size.json" "$size") \
          <(bench_row "$WORK/results/etcd-size-$size.json" "$size") | awk '{
          printf "| | **ours/etcd** | **%.2f×** | | %.2f× | %.2f× | %.2f× | %.2f× | |\n",
            ($8 > 0 ? $1 / $8 : 0), ($10 > 0 ? $3 / $10 : 0), ($11 > 0 ? $4 / $11 : 0),
            ($12 > 0 ? $5 / $12 : 0), ($13 > 0 ? $6 / $13 : 0) }'
      fi
    done
    echo
    printf '### 128-byte writes beside %s clients writing 1 MiB values\n\n' "$BENCH_BIG_CLIENTS"
    echo "| system | small writes | writes/s | p50 ms | p99 ms | p99.9 ms | max ms | errors | 1 MiB writes/s beside them |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
    for run in tinykv etcd; do
      [ -f "$WORK/results/$run-beside-big.json" ] || continue
      if [ -f "$WORK/results/$run-size-128.json" ]; then
        read -r ops mib p50 p99 p999 max errors <<< "$(bench_row "$WORK/results/$run-size-128.json" 128)"
        echo "| $(run_title "$run") | alone | $ops | $p50 | $p99 | $p999 | $max | $errors | |"
      fi
      read -r ops mib p50 p99 p999 max errors <<< "$(bench_row "$WORK/results/$run-beside-big.json" 128)"
      echo "| $(run_title "$run") | beside 1 MiB writes | $ops | $p50 | $p99 | $p999 | $max | $errors | $(throughput_of "$WORK/results/$run-big.json" | awk '{ printf "%.1f", $1 }') |"
    done
    echo
  fi
  echo "### Peak memory of each node (MiB, nodes 1 / 2 / 3)"
  echo
  echo "| system | after the ${BENCH_VALUE_SIZE}-byte workloads | after the runs of this section |"
  echo "|---|---|---|"
  for run in tinykv etcd; do
    [ -n "${PEAK_RSS["$run base"]:-}" ] || continue
    echo "| $(run_title "$run") | ${PEAK_RSS["$run base"]} | ${PEAK_RSS["$run sweep"]:-} |"
  done
  echo
}

# One comparison table per workload: compare_all OURS THEIRS TITLE_SUFFIX, from the runs'
# results/OURS-<workload>.json and results/THEIRS-<workload>.json (ours alone if theirs
# is missing).
compare_all() {
  local workload
  for workload in $BENCH_WORKLOADS; do
    compare_pair "$WORK/results/$1-$workload.json" "$WORK/results/$2-$workload.json" \
      "$(title_of "$workload")$3"
  done
}

# One comparison table: compare_pair OURS.json THEIRS.json TITLE (ours alone if theirs is
# missing).
compare_pair() {
  if [ -f "$2" ]; then
    "$BENCH" compare "$1" "$2" --title "$3"
  else
    "$BENCH" compare "$1" --title "$3"
  fi
  echo
}
cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
mem=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
os=$( (. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME") || uname -s)
fs=$(df -T "$WORK" | awk 'NR == 2 { print $2 " on " $1 }')
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain 2>/dev/null)" ]; then commit="$commit (with uncommitted changes)"; fi
HAVE_TLS=0
if [ "$BENCH_SKIP_TLS" != 1 ]; then HAVE_TLS=1; fi
run_title() {
  case "$1" in
    tinykv) echo "TinyKV-rs" ;;
    tinykv-tls) echo "TinyKV-rs TLS" ;;
    etcd) echo "$ETCD_LABEL" ;;
    etcd-tls) echo "$ETCD_LABEL TLS" ;;
  esac
}
ALL_RUNS=(tinykv)
if [ "$HAVE_TLS" = 1 ]; then ALL_RUNS+=(tinykv-tls); fi
if [ "$BENCH_SKIP_ETCD" != 1 ]; then
  ALL_RUNS+=(etcd)
  if [ "$HAVE_TLS" = 1 ]; then ALL_RUNS+=(etcd-tls); fi
fi
# The workload the CPU sentence quotes: write if it ran, else the first.
cpu_workload=write
case " $BENCH_WORKLOADS " in *" write "*) ;; *) cpu_workload=${BENCH_WORKLOADS%% *} ;; esac

{
  cat <<EOF
# Benchmarks: TinyKV-rs and etcd side by side, in plaintext and with TLS

Generated by \`make bench\` (\`.ci/bench.sh\`) on $(date -u '+%Y-%m-%d %H:%M UTC'). Rerun it to
refresh this page; every number below comes from that one run.

## What is measured

3-node clusters on loopback, on the same machine as the load generator, each started
fresh with empty data directories, one after the other: TinyKV-rs in plaintext
(\`configs/node1..3.toml\` on other ports), TinyKV-rs with TLS, etcd in plaintext, etcd with
TLS. Only one cluster runs at a time: each runs every workload, is stopped, then the next
starts (after a \`sync\`, so that no cluster's fsyncs wait for the previous one's, or the
build's, dirty pages). Both systems acknowledge a write only once a majority has fsynced it (TinyKV-rs
fsyncs the raft log; etcd fsyncs its WAL, its default), and both serve linearizable reads
(TinyKV-rs through ReadIndex; etcd's range requests are linearizable unless
\`serializable\` is set, and it is not).

The TLS runs use one CA and one certificate per store, made for this run by
\`tinykv-ctl certs dev\` (valid for 127.0.0.1, localhost and ::1, usable as server and
client certificates). TinyKV-rs layers \`configs/tls/nodeN.toml\` on each node's config:
HTTPS on the client port (clients need only the CA: \`client_cert_auth\` is off) and mutual
TLS between the nodes (raft streams, snapshots and node-to-node HTTP; each side must show
a certificate the CA signed that names a store). etcd member N uses store N's certificate:
HTTPS for its clients (\`--cert-file\`, \`--key-file\`, \`--trusted-ca-file\`) and mutual
TLS to its peers (\`--peer-cert-file\`, \`--peer-key-file\`, \`--peer-trusted-ca-file\`,
\`--peer-client-cert-auth\`). Against either system tinykv-bench is given the CA
(\`--cacert\`), so it checks each server's certificate and host name, as a real client
would. One difference: etcd ${ETCD_VERSION:-3.4} asks every client for a certificate once
\`--trusted-ca-file\` is set, even without \`--client-cert-auth\`, so against etcd
tinykv-bench also shows user admin's certificate (\`--cert\`, \`--key\`); TinyKV-rs does not
ask for one. That costs etcd a little more per handshake, not per request.

The client is \`tinykv-bench\` (\`src/bin/tinykv_bench/\`): closed loop, ${BENCH_CLIENTS} clients spread
round-robin over the three nodes, each sending its next request as soon as the previous
one is answered, over HTTP/1.1 keep-alive connections (HTTPS in the TLS runs; a
connection is set up, TLS handshake included, once, and then reused). The key space is ${BENCH_KEYS} keys
(\`bench-0000\`…), chosen uniformly; values are ${BENCH_VALUE_SIZE} bytes. Before the read workloads every key is
written once (\`--preload\`), so reads find their key. Each run warms up for ${BENCH_WARMUP} (not
measured), then measures for ${BENCH_DURATION}. TinyKV-rs is driven through its REST API
(\`PUT\`/\`GET /v1/kv/{key}\`), etcd through its v3 JSON gateway (\`POST /v3/kv/put\`,
\`/v3/kv/range\`, base64 keys and values): REST against REST. The gateway translates each
request to gRPC inside etcd, so etcd's native gRPC clients would see more throughput and
lower latency than shown here. The load generator and the three nodes share the
machine's ${NPROC} cores, so on a small machine these numbers say as much about CPU per request as
about the disk or the network, and the load generator's own share of the CPU (measured
below) is CPU the servers do not get.

The transfer workload moves one unit between two random keys of the ${BENCH_KEYS} in a
transaction, without a preload (a key never written counts as 0 at version 0): it reads
both keys in one transaction, then writes both in a transaction that commits only if
neither key changed since, and starts again if one did (a lost race). On
TinyKV-rs both are \`POST /v1/txn\` (two gets; then a compare of both keys' \`version\`
with two puts, committed across regions with two-phase commit); on etcd both are
\`POST /v3/kv/txn\` (two \`request_range\`; then a compare of both keys'
\`mod_revision\` with two \`request_put\`). One operation is one committed transfer, its
latency from the first read to the commit, retries included.

Latency is per request, from send to the end of the response, in milliseconds; throughput
is successful operations per second. In the ratio rows (ours/…) "ours" is the first
system of the table: TinyKV-rs against etcd, TinyKV-rs TLS against etcd TLS, and
TinyKV-rs TLS against TinyKV-rs plaintext. Above 1 means more throughput, or more latency,
than the other. On a small or shared machine repeated runs differ by tens of percent, tail
latencies most (the load averages below tell how busy the machine was): compare systems
within one run rather than numbers across runs.

## Machine

| | |
|---|---|
| CPU | ${cpu_model} |
| cores (\`nproc\`) | ${NPROC} |
| memory | ${mem} |
| OS, kernel | ${os}, $(uname -r) |
| data directories | ${fs} |
| load average (1, 5, 15 min) when the script started (before building) | ${LOAD_BEFORE} |
EOF
  for run in "${ALL_RUNS[@]}"; do
    echo "| load average when the $(run_title "$run") cluster started | ${LOAD_AT[$run]} |"
  done
  cat <<EOF
| load average when the last cluster stopped | ${LOAD_AFTER} |

Once the first cluster has run, the load averages include the benchmark's own threads (${BENCH_CLIENTS}
closed-loop clients keep many runnable on ${NPROC} cores); the column "other processes" of the
CPU table below tells how much CPU anything else took during each run.

## Versions

| | |
|---|---|
| TinyKV-rs | commit ${commit}, ${TINYKV_VERSION}, release build |
| Rust | $(rustc --version 2>/dev/null || echo unknown) |
EOF
  if [ "$BENCH_SKIP_ETCD" != 1 ]; then
    echo "| etcd | ${ETCD_VERSION} (Debian package etcd-server, ${ETCD_GO}) |"
  else
    echo "| etcd | not measured: etcd was not available |"
  fi
  echo "| load generator | tinykv-bench $("$BENCH" --version | awk '{ print $2 }') |"
  if [ "$BENCH_SKIP_WRK" != 1 ]; then
    echo "| cross-check | wrk ${WRK_VERSION} |"
  fi
  printf '\n## Results in plaintext: TinyKV-rs and %s\n\n' "$ETCD_LABEL"
  compare_all tinykv etcd ""
  if [ "$HAVE_TLS" = 1 ]; then
    printf '## Results with TLS: TinyKV-rs TLS and %s TLS\n\n' "$ETCD_LABEL"
    compare_all tinykv-tls etcd-tls ", TLS"
    cat <<EOF
## The cost of TLS to TinyKV-rs

The target: TLS may cost at most ${TLS_BUDGET}% of TinyKV-rs's throughput in plaintext. The cost
is 1 − (TLS ops/s ÷ plaintext ops/s), over all operations of the workload, from the two
TinyKV-rs runs above (run one after the other, each on a fresh cluster). It is one pair of
runs: on a small shared machine one run can differ from the next by more than the budget
(see the load averages above and [performance.md](performance.md)), so a cost near or
below zero, or near the budget, says little on its own; rerun before drawing conclusions.

| workload | plaintext ops/s | TLS ops/s | TLS/plaintext | cost of TLS | within ${TLS_BUDGET}% |
|---|---:|---:|---:|---:|---|
EOF
    for workload in $BENCH_WORKLOADS; do
      plain=$(throughput_of "$WORK/results/tinykv-$workload.json")
      tls=$(throughput_of "$WORK/results/tinykv-tls-$workload.json")
      awk -v w="$(title_of "$workload")" -v p="$plain" -v t="$tls" -v b="$TLS_BUDGET" 'BEGIN {
        cost = 100 * (1 - t / p)
        printf "| %s | %.0f | %.0f | %.2f× | %.1f%% | %s |\n", w, p, t, t / p, cost, (cost <= b ? "yes" : "**no**") }'
    done
    echo
    for workload in $BENCH_WORKLOADS; do
      # The plaintext result under a label that says so, for this table only.
      sed 's/"label": "TinyKV-rs"/"label": "TinyKV-rs plaintext"/' \
        "$WORK/results/tinykv-$workload.json" > "$WORK/results/tinykv-$workload.plaintext.json"
      "$BENCH" compare "$WORK/results/tinykv-tls-$workload.json" \
        "$WORK/results/tinykv-$workload.plaintext.json" \
        --title "$(title_of "$workload"): TinyKV-rs TLS against plaintext"
      echo
    done
  fi
  extras_section
  if [ "$BENCH_SKIP_WRK" != 1 ]; then
    cat <<EOF
## Cross-check with wrk

[wrk](https://github.com/wg/wrk), a lean HTTP load generator written in C that this project
did not write, after the tinykv-bench workloads of each TinyKV-rs cluster: \`wrk -t2 -c64
-d${BENCH_WRK_DURATION} --latency\`, 64 keep-alive connections from 2 threads, all sending \`GET\` of one
preloaded ${BENCH_VALUE_SIZE}-byte key (\`bench-wrk\`) to one node (http, then https), which answers with a
linearizable read (ReadIndex) like every GET. The node is the one that leads the keys'
region, asked of \`/v1/admin/regions\` before each wrk run: a leader serves a read itself
and a follower forwards it to the leader, two different paths, so both runs load a node
in the same role. wrk runs on the same ${NPROC} cores as the three nodes, as
tinykv-bench does. It does not check the server's certificate (its OpenSSL client verifies
nothing) and has no warm-up: its 64 connections, and with TLS their handshakes, start
with the measurement, which shows in the maximum. Latency percentiles are as wrk prints
them. One key on one node is not YCSB-C: compare the two wrk rows with each other, not
with the tables above.

Then tinykv-bench sends the very same request (\`--endpoints\` that node, \`--keys 1
--key-prefix bench-wrk --workload c --clients 64 --warmup 0s\`, as long), to show what the
load generator of the tables above costs next to wrk: the goal is that it reaches wrk's
throughput at no more CPU. Its latencies are its own (\`p75\`/\`p90\` are wrk's only).

| run | client | node | requests/s | mean ms | p50 ms | p99 ms | max ms | errors | client's CPU (% of machine) | servers' CPU (% of machine) |
|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|
EOF
    for run in tinykv tinykv-tls; do
      [ -f "$WORK/results/wrk-$run.txt" ] || continue
      read -r rps avg p50 p75 p90 p99 max errors <<< "$(wrk_numbers "wrk-$run")"
      echo "| $(run_title "$run") | wrk | ${WRK_NODE[$run]:-} | $rps | $avg | $p50 | $p99 | $max | $errors | $(own_share "wrk-$run") | $(server_share "wrk-$run") |"
      [ -f "$WORK/results/bench-as-wrk-$run.json" ] || continue
      read -r brps bavg bp50 bp99 bmax berrors <<< "$(bench_numbers "$WORK/results/bench-as-wrk-$run.json")"
      echo "| $(run_title "$run") | tinykv-bench | ${WRK_NODE[$run]:-} | $brps | $bavg | $bp50 | $bp99 | $bmax | $berrors | $(own_share "bench-as-wrk-$run") | $(server_share "bench-as-wrk-$run") |"
      awk -v a="$brps" -v b="$rps" -v ca="$(own_share "bench-as-wrk-$run")" -v cb="$(own_share "wrk-$run")" \
        'BEGIN { sub(/%/, "", ca); sub(/%/, "", cb)
                 printf "| | **tinykv-bench/wrk** | | **%.2f×** | | | | | | %.2f× | |\n", a / b, (cb > 0 ? ca / cb : 0) }'
    done
    if [ -f "$WORK/results/wrk-tinykv-tls.txt" ]; then
      paste -d' ' <(wrk_numbers wrk-tinykv-tls) <(wrk_numbers wrk-tinykv) | awk '{
        printf "| **TLS/plaintext**, wrk | | | **%.2f×** | %.2f× | %.2f× | %.2f× | %.2f× | | | |\n",
          $1 / $9, ($10 > 0 ? $2 / $10 : 0), ($11 > 0 ? $3 / $11 : 0), ($14 > 0 ? $6 / $14 : 0),
          ($15 > 0 ? $7 / $15 : 0) }'
    fi
    echo
  fi
  cat <<EOF
## The load generator's CPU

tinykv-bench does not report its own CPU time, so the script takes it from bash's \`time\`
around each run (user + system time of the whole process: preload, warm-up and
measurement), the three servers' CPU time over the same span from \`/proc/PID/stat\`, and
the whole machine's from \`/proc/stat\`; "other processes" is what the machine spent on
anything else (other work on a shared machine, the kernel's own threads), "idle" what
nobody used. A share is CPU seconds ÷ (wall-clock seconds × ${NPROC} cores): 100% is the whole
machine. The last column counts the TCP connections the machine accepted during the run
(\`PassiveOpens\` in \`/proc/net/snmp\`): tinykv-bench's own (one per client, a few more
while preloading) and those the nodes open to each other (a fresh cluster's pools fill
during its first runs, then stay open). It would grow with the run's length if
connections, and with TLS their handshakes, were made again and again while measuring.
EOF
  echo
  if [ -f "$WORK/results/tinykv-$cpu_workload.time" ]; then
    printf 'During the TinyKV-rs %s run tinykv-bench used %s of the machine'"'"'s CPU (the three nodes %s)' \
      "$cpu_workload" "$(own_share "tinykv-$cpu_workload")" "$(server_share "tinykv-$cpu_workload")"
    if [ -f "$WORK/results/tinykv-tls-$cpu_workload.time" ]; then
      printf '; with TLS, %s (the nodes %s)' \
        "$(own_share "tinykv-tls-$cpu_workload")" "$(server_share "tinykv-tls-$cpu_workload")"
    fi
    printf '.\n\n'
  fi
  echo "| cluster | workload | wall s | tinykv-bench CPU s | tinykv-bench | servers | other processes | idle or waiting for I/O | TCP connections accepted |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
  for run in "${ALL_RUNS[@]}"; do
    for workload in $BENCH_WORKLOADS; do
      [ -f "$WORK/results/$run-$workload.time" ] || continue
      echo "| $(run_title "$run") | $workload | $(cpu_cells "$run-$workload") |"
    done
  done
  cat <<EOF

## Reproducing

\`\`\`sh
make bench BENCH_DURATION=${BENCH_DURATION}   # or: BENCH_DURATION=${BENCH_DURATION} bash .ci/bench.sh
\`\`\`

Other knobs: \`BENCH_WARMUP\`, \`BENCH_CLIENTS\`, \`BENCH_KEYS\`, \`BENCH_VALUE_SIZE\`,
\`BENCH_WORKLOADS\` (default \`write a b c\`), \`BENCH_SKIP_ETCD=1\`, \`BENCH_SKIP_TLS=1\`,
\`BENCH_SKIP_WRK=1\`, \`BENCH_WRK_DURATION\` (default \`10s\`), \`BENCH_KEEP=1\` (keep the temp
dir with logs and JSON results). The script makes the certificates and starts each
cluster in turn (each server in the background, waiting until every node answers
\`/health\` and accepts a write; a cluster is stopped before the next one starts):

\`\`\`sh
$CARGO build --release --bin tinykv-server --bin tinykv-bench --bin tinykv-ctl
TMP=\$(mktemp -d); mkdir -p \$TMP/tinykv \$TMP/tinykv-tls \$TMP/results
$(sed "s#$WORK/#\\\$TMP/#g" "$WORK/servers.txt")
\`\`\`

and runs against each cluster in turn (wrk after the tinykv-bench runs of each TinyKV-rs
cluster, against the node that led the keys' region in that run):

\`\`\`sh
$(sed "s#$WORK/#\\\$TMP/#g" "$COMMANDS")
\`\`\`

\`tinykv-bench --help\` lists every option, including \`--rate\` (fixed-rate mode: requests
on a fixed timetable, latency counted from each request's scheduled start, so that a
stalled server is not hidden by coordinated omission) and \`--read-ratio\`.

## Where the time goes

[performance.md](performance.md) profiles these runs: what limits throughput on this
machine, what was done about it, and what comes next.

## Micro-benchmarks

\`cargo bench -p tinykv-actors\` runs Criterion benchmarks of the storage path under the
raftstore (\`actors/benches/engine.rs\`): an engine batch of 100 puts without and with
fsync, a point get, and the raft-log writer (group commit) on its own, with 1 and 64
regions handing it a synced append at once. Once built they run in under a minute; they are not part of
\`make test\`.
EOF
} > "$BENCH_OUT.tmp"
# The failover section (`make bench-failover`, .ci/failover.sh) is kept as it was.
if [ -f "$BENCH_OUT" ] && grep -q '<!-- failover:begin -->' "$BENCH_OUT"; then
  { echo; sed -n '/<!-- failover:begin -->/,/<!-- failover:end -->/p' "$BENCH_OUT"; } >> "$BENCH_OUT.tmp"
fi
# So is the scale section (`make bench-scale`, .ci/scale.sh).
if [ -f "$BENCH_OUT" ] && grep -q '<!-- scale:begin -->' "$BENCH_OUT"; then
  { echo; sed -n '/<!-- scale:begin -->/,/<!-- scale:end -->/p' "$BENCH_OUT"; } >> "$BENCH_OUT.tmp"
fi
mv "$BENCH_OUT.tmp" "$BENCH_OUT"

OK=1
log "done: $BENCH_OUT"
sed -n '/^## Results/,/^## Reproducing/p' "$BENCH_OUT" | sed '$d'
