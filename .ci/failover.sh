#!/usr/bin/env bash
# `make bench-failover`: what clients see when the leader dies, TinyKV-rs and etcd side by
# side on this machine; writes the "Failover" section of docs/benchmarks.md.
#
# For each system, on a fresh 3-node cluster on loopback (the ports and configs of
# `make bench`): tinykv-bench runs FAILOVER_CLIENTS (64) closed-loop writers for
# FAILOVER_DURATION (30 s, no warm-up), spread over the three nodes; at FAILOVER_KILL_AT
# (10 s) the node leading the written keys' region (TinyKV-rs: region 1; etcd: the raft
# leader) is killed with SIGKILL, and at FAILOVER_RESTART_AT (20 s) it is started again
# over its data. A request that gets no answer (the killed node's connections) is sent
# again to the next node by the client, as any client of a replicated store does; a
# TinyKV-rs write carries an Idempotency-Key, so it applies once. The section reports, per
# system: the errors clients saw, the longest time in which no write succeeded, and the
# latency percentiles of the whole run (which contains the failover).
#
# Then a rolling restart of TinyKV-rs, twice on fresh clusters: the same writers for
# ROLLING_DURATION (40 s); from 5 s on, each node in turn is stopped with SIGTERM and
# started again once it exited, and the next one follows once every node answers /health
# (ready). The first time each node's leaderships are drained first (`tinykv-ctl store
# drain-leaders`, through another node); the second time they are not. The writers keep
# sending to every node, the restarting one included (its refused connections are
# retried on the next node), as clients without a health-checking balancer would.
#
# Knobs: FAILOVER_CLIENTS, FAILOVER_DURATION (seconds), FAILOVER_KILL_AT,
# FAILOVER_RESTART_AT, ROLLING_DURATION, FAILOVER_SKIP_ROLLING (0), BENCH_OUT
# (docs/benchmarks.md), BENCH_SKIP_ETCD (0).
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO=${CARGO:-cargo}
FAILOVER_CLIENTS=${FAILOVER_CLIENTS:-64}
FAILOVER_DURATION=${FAILOVER_DURATION:-30}
FAILOVER_KILL_AT=${FAILOVER_KILL_AT:-10}
FAILOVER_RESTART_AT=${FAILOVER_RESTART_AT:-20}
ROLLING_DURATION=${ROLLING_DURATION:-40}
CTL=target/release/tinykv-ctl
BENCH_OUT=${BENCH_OUT:-docs/benchmarks.md}
BENCH_SKIP_ETCD=${BENCH_SKIP_ETCD:-0}
SERVER=target/release/tinykv-server
BENCH=target/release/tinykv-bench
TINYKV_HTTP=(18081 18082 18083)
ETCD_CLIENT=(12379 22379 32379)
ETCD_PEER=(12380 22380 32380)

NAME=failover
# shellcheck source=.ci/lib.sh
. .ci/lib.sh

log "building the release binaries"
$CARGO build --release --bin tinykv-server --bin tinykv-bench --bin tinykv-ctl >&2
if [ "$BENCH_SKIP_ETCD" != 1 ] && ! command -v etcd >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "etcd is missing: installing Debian's etcd-server"
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >&2 || true
  fi
  command -v etcd >/dev/null 2>&1 || { echo "failover: no etcd: TinyKV-rs only" >&2; BENCH_SKIP_ETCD=1; }
fi

# start_tinykv [DIR]: a fresh cluster with its data in $WORK/DIR (tinykv).
start_tinykv() {
  local n dir=$WORK/${1:-tinykv}
  ENDPOINTS=()
  for n in 1 2 3; do
    tinykv_config "$n" "$dir"
    CMD[$n]="$SERVER --config $dir/node$n.toml"
    start "$n"
    ENDPOINTS+=("http://127.0.0.1:${TINYKV_HTTP[$((n-1))]}")
  done
  for e in "${ENDPOINTS[@]}"; do
    wait_for 60 curl -fsS "$e/health" || die "TinyKV-rs node $e did not become healthy"
    wait_for 60 curl -fsS -X PUT --data-binary ready "$e/v1/kv/bench-ready" || die "$e takes no writes"
  done
}

start_etcd() {
  local n client peer cluster
  ENDPOINTS=()
  cluster="e1=http://127.0.0.1:${ETCD_PEER[0]},e2=http://127.0.0.1:${ETCD_PEER[1]},e3=http://127.0.0.1:${ETCD_PEER[2]}"
  for n in 1 2 3; do
    client="http://127.0.0.1:${ETCD_CLIENT[$((n-1))]}"
    peer="http://127.0.0.1:${ETCD_PEER[$((n-1))]}"
    CMD[$n]="etcd --name e$n --data-dir $WORK/etcd/e$n --listen-client-urls $client --advertise-client-urls $client --listen-peer-urls $peer --initial-advertise-peer-urls $peer --initial-cluster $cluster --initial-cluster-state new --initial-cluster-token tinykv-failover --logger zap --log-outputs stderr"
    start "$n"
    ENDPOINTS+=("$client")
  done
  for e in "${ENDPOINTS[@]}"; do
    wait_for 60 sh -c "curl -fsS $e/health | grep -q '\"health\":\"true\"'" || die "etcd member $e did not become healthy"
  done
}

# The node (1-3) leading the written keys.
leader_tinykv() {
  curl -fsS "${ENDPOINTS[0]}/v1/admin/regions/1" \
    | sed -n 's/.*"leader":{[^}]*"store_id":\([0-9]*\).*/\1/p'
}
leader_etcd() {
  local n status
  for n in 1 2 3; do
    status=$(curl -fsS -X POST -d '{}' "${ENDPOINTS[$((n-1))]}/v3/maintenance/status" 2>/dev/null) || continue
    member=$(sed -n 's/.*"member_id":"\([0-9]*\)".*/\1/p' <<<"$status")
    leader=$(sed -n 's/.*"leader":"\([0-9]*\)".*/\1/p' <<<"$status")
    if [ -n "$member" ] && [ "$member" = "$leader" ]; then echo "$n"; return; fi
  done
}

# run SYSTEM: the scenario against the running cluster; results in $WORK/SYSTEM.*
run() {
  local system=$1 leader joined
  local endpoints
  endpoints=$(IFS=,; echo "${ENDPOINTS[*]}")
  log "$system: $FAILOVER_CLIENTS writers for ${FAILOVER_DURATION}s, kill -9 the leader at ${FAILOVER_KILL_AT}s, restart it at ${FAILOVER_RESTART_AT}s"
  # Timed (wall, user, system seconds), for the load generator's own share of the CPU.
  (
    TIMEFORMAT='%3R %3U %3S'
    { time "$BENCH" --target "$system" --endpoints "$endpoints" --clients "$FAILOVER_CLIENTS" \
        --workload write --duration "${FAILOVER_DURATION}s" --warmup 0s --timeout 15s --quiet \
        --json "$WORK/$system.json" > "$WORK/$system.txt" 2> "$WORK/$system.err"; } 2> "$WORK/$system.time"
  ) &
  local bench=$!
  sleep "$FAILOVER_KILL_AT"
  leader=$("leader_$system")
  [ -n "$leader" ] || die "$system: no leader found"
  kill -9 "${PID[$leader]}"
  echo "$leader" > "$WORK/$system.killed"
  log "$system: killed node $leader"
  sleep $((FAILOVER_RESTART_AT - FAILOVER_KILL_AT))
  start "$leader"
  log "$system: restarted node $leader"
  wait "$bench" || die "$system: tinykv-bench failed (see $WORK/$system.err)"
  joined=$(cat "$WORK/$system.txt")
  printf '%s\n' "$joined" >&2
}

# field FILE KEY: a number of the "all" summary (or of the report) in a --json result.
field() {
  awk -v key="\"$2\"" '/"op": "all"/ { all = 1 } all && index($0, key) { gsub(/[^0-9.]/, "", $2); print $2; exit }' "$1"
}
gap() { sed -n 's/.*"longest_gap_ms": \([0-9.]*\).*/\1/p' "$1"; }

# run_rolling MODE (drain or plain): the rolling restart against the running TinyKV-rs
# cluster; results in $WORK/rolling-MODE.*
run_rolling() {
  local mode=$1 name=rolling-$1 n e bench
  local endpoints
  endpoints=$(IFS=,; echo "${ENDPOINTS[*]}")
  log "TinyKV-rs: rolling restart ($mode) under $FAILOVER_CLIENTS writers for ${ROLLING_DURATION}s"
  (
    TIMEFORMAT='%3R %3U %3S'
    { time "$BENCH" --target tinykv --endpoints "$endpoints" --clients "$FAILOVER_CLIENTS" \
        --workload write --duration "${ROLLING_DURATION}s" --warmup 0s --timeout 15s --quiet \
        --json "$WORK/$name.json" > "$WORK/$name.txt" 2> "$WORK/$name.err"; } 2> "$WORK/$name.time"
  ) &
  bench=$!
  sleep 5
  for n in 1 2 3; do
    if [ "$mode" = drain ]; then
      "$CTL" --addr "127.0.0.1:${TINYKV_HTTP[$((n % 3))]}" store drain-leaders "$n" --timeout 30 >&2 \
        || die "the drain of store $n failed"
    fi
    kill -TERM "${PID[$n]}"
    wait "${PID[$n]}" 2>/dev/null || true
    start "$n"
    for e in "${ENDPOINTS[@]}"; do
      wait_for 60 curl -fsS "$e/health" || die "TinyKV-rs node $e did not become ready"
    done
    log "TinyKV-rs: node $n restarted ($mode)"
  done
  wait "$bench" || die "rolling restart: tinykv-bench failed (see $WORK/$name.err)"
}

start_tinykv
run tinykv
stop_all
if [ "$BENCH_SKIP_ETCD" != 1 ]; then
  start_etcd
  run etcd
  stop_all
  ETCD_VERSION=$(etcd --version | sed -n 's/^etcd Version: //p')
fi

row() {
  local system=$1 name=$2 json="$WORK/$1.json"
  printf '| %s | %s | %s | %.0f | %.0f | %.1f | %.1f | %.0f | %s |\n' "$name" "$(field "$json" count)" \
    "$(field "$json" errors)" "$(field "$json" throughput)" "$(gap "$json")" \
    "$(field "$json" p99_ms)" "$(field "$json" p999_ms)" "$(field "$json" max_ms)" \
    "$(awk -v n="$(nproc)" '{ printf "%.0f%%", 100 * ($2 + $3) / ($1 * n) }' "$WORK/$1.time")"
}
# errors SYSTEM NAME: the distinct errors its clients saw, as tinykv-bench listed them.
errors() {
  local lines
  lines=$(sed -n 's/^error ×\([0-9]*\): \(.*\)$/- ×\1: `\2`/p' "$WORK/$1.err")
  if [ -n "$lines" ]; then
    printf 'Errors %s clients saw:\n\n%s\n\n' "$2" "$lines"
  else
    printf '%s clients saw no error.\n\n' "$2"
  fi
}

section() {
  cat <<EOF
<!-- failover:begin -->
## Failover: the leader killed under load

Generated by \`make bench-failover\` (\`.ci/failover.sh\`) on $(date -u '+%Y-%m-%d %H:%M UTC'),
commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown). Each system on a fresh
3-node cluster (as above, plaintext): ${FAILOVER_CLIENTS} closed-loop writers (128-byte values,
10,000 keys) for ${FAILOVER_DURATION} s; at ${FAILOVER_KILL_AT} s the node leading the keys is killed
with SIGKILL, at ${FAILOVER_RESTART_AT} s it is started again over its data. A request that gets
no answer is sent again to the next node by the client (a TinyKV-rs write with its
\`Idempotency-Key\`, so it applies once). Errors are what the clients saw after that; the
longest gap is the longest time in which no write succeeded; latencies are over the whole
run. The load generator (tinykv-bench) shares the machine's $(nproc) cores with the nodes;
its own share of the machine's CPU is in the last column. TinyKV-rs elects a new leader after an election timeout of 10 to 20 ticks of 100 ms
(\`raftstore\` defaults), etcd after its \`--election-timeout\` of 1 s.

| system | writes | errors | writes/s | longest gap, ms | p99 ms | p99.9 ms | max ms | load generator's CPU share |
|---|---:|---:|---:|---:|---:|---:|---:|---:|
EOF
  row tinykv TinyKV-rs
  if [ "$BENCH_SKIP_ETCD" != 1 ]; then row etcd "etcd $ETCD_VERSION"; fi
  echo
  errors tinykv TinyKV-rs
  if [ "$BENCH_SKIP_ETCD" != 1 ]; then errors etcd "etcd"; fi
  echo "The killed node: TinyKV-rs node $(cat "$WORK/tinykv.killed")$( [ "$BENCH_SKIP_ETCD" = 1 ] || echo ", etcd member $(cat "$WORK/etcd.killed")")."
  if [ "${FAILOVER_SKIP_ROLLING:-0}" != 1 ]; then rolling_section; fi
  echo
  echo '<!-- failover:end -->'
}
if [ "${FAILOVER_SKIP_ROLLING:-0}" != 1 ]; then
  for mode in drain plain; do
    start_tinykv "rolling-$mode"
    run_rolling "$mode"
    stop_all
  done
fi

rolling_section() {
  cat <<EOF

### Rolling restart

The same ${FAILOVER_CLIENTS} writers for ${ROLLING_DURATION} s against a fresh TinyKV-rs cluster; from 5 s on,
each node in turn is stopped with SIGTERM and started again, the next one once every node
is ready (\`/health\` 200). The writers keep sending to every node, the restarting one
included, retrying a refused connection on the next node. With drains, each node's
leaderships are moved away first (\`tinykv-ctl store drain-leaders\`, through another node).

| rolling restart | writes | errors | writes/s | longest gap, ms | p99 ms | p99.9 ms | max ms | load generator's CPU share |
|---|---:|---:|---:|---:|---:|---:|---:|---:|
EOF
  row rolling-drain "with leader drains"
  row rolling-plain "without drains"
  echo
  errors rolling-drain "With drains,"
  errors rolling-plain "Without drains,"
}

section > "$WORK/section.md"
cat "$WORK/section.md"
write_section failover "$WORK/section.md"
log "wrote the failover section of $BENCH_OUT"
