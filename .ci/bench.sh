#!/usr/bin/env bash
# `make bench`: TinyKV-rs and etcd side by side on this machine; writes docs/benchmarks.md.
#
# 1. builds tinykv-server and tinykv-bench (release);
# 2. installs etcd-server from Debian if `etcd` is missing (root + apt-get only);
# 3. starts a fresh 3-node TinyKV-rs cluster on loopback (configs/node1..3.toml with other
#    ports: HTTP 18081-18083, raft 21161-21163; data in a temp dir), runs every workload
#    against it, and stops it;
# 4. does the same with a fresh 3-member etcd cluster (clients 12379/22379/32379, peers
#    12380/22380/32380; etcd's default fsync of its WAL is kept);
# 5. writes docs/benchmarks.md from the runs' --json results (`tinykv-bench compare`).
# One system runs at a time, so the two never compete for the machine's cores.
#
# Knobs (environment): BENCH_DURATION (20s), BENCH_WARMUP (3s), BENCH_CLIENTS (64),
# BENCH_KEYS (10000), BENCH_VALUE_SIZE (128), BENCH_WORKLOADS ("write a b c"),
# BENCH_OUT (docs/benchmarks.md), BENCH_SKIP_ETCD (0), BENCH_KEEP (0: delete the temp dir
# with logs and JSON results at the end; it is always kept if something failed).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

CARGO=${CARGO:-cargo}
BENCH_DURATION=${BENCH_DURATION:-20s}
BENCH_WARMUP=${BENCH_WARMUP:-3s}
BENCH_CLIENTS=${BENCH_CLIENTS:-64}
BENCH_KEYS=${BENCH_KEYS:-10000}
BENCH_VALUE_SIZE=${BENCH_VALUE_SIZE:-128}
BENCH_WORKLOADS=${BENCH_WORKLOADS:-write a b c}
BENCH_OUT=${BENCH_OUT:-docs/benchmarks.md}
BENCH_SKIP_ETCD=${BENCH_SKIP_ETCD:-0}
BENCH_KEEP=${BENCH_KEEP:-0}
SEED=42

SERVER=target/release/tinykv-server
BENCH=target/release/tinykv-bench
TINYKV_HTTP=(18081 18082 18083)
TINYKV_RAFT=(21161 21162 21163)
ETCD_CLIENT=(12379 22379 32379)
ETCD_PEER=(12380 22380 32380)

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

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- build
log "building tinykv-server and tinykv-bench (release)"
nice -n 10 "$CARGO" build --release --bin tinykv-server --bin tinykv-bench

# ---------------------------------------------------------------- etcd
ETCD_VERSION=""
ETCD_GO=""
if [ "$BENCH_SKIP_ETCD" != 1 ]; then
  if ! command -v etcd >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      log "etcd is missing: installing Debian's etcd-server"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null \
        || echo "bench: could not install etcd-server" >&2
    fi
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

for port in "${TINYKV_HTTP[@]}" "${TINYKV_RAFT[@]}" "${ETCD_CLIENT[@]}" "${ETCD_PEER[@]}"; do
  if port_in_use "$port"; then die "port $port is in use on 127.0.0.1"; fi
done

mkdir -p "$WORK/results" "$WORK/logs"
COMMANDS="$WORK/commands.txt"
: > "$COMMANDS"

# Runs one workload against one system: run_workload TARGET LABEL ENDPOINTS WORKLOAD
run_workload() {
  local target=$1 label=$2 endpoints=$3 workload=$4
  local args=(--target "$target" --label "$label" --endpoints "$endpoints"
    --clients "$BENCH_CLIENTS" --duration "$BENCH_DURATION" --warmup "$BENCH_WARMUP"
    --keys "$BENCH_KEYS" --value-size "$BENCH_VALUE_SIZE" --workload "$workload" --seed "$SEED")
  if [ "$workload" != write ]; then args+=(--preload); fi
  shquote "$BENCH" "${args[@]}" --json "$WORK/results/$target-$workload.json" >> "$COMMANDS"
  log "$label: workload $workload"
  "$BENCH" "${args[@]}" --json "$WORK/results/$target-$workload.json" \
    | tee "$WORK/results/$target-$workload.txt"
}

# ---------------------------------------------------------------- TinyKV-rs
log "starting a 3-node TinyKV-rs cluster in $WORK/tinykv"
TINYKV_ENDPOINTS=()
for n in 1 2 3; do
  conf="$WORK/tinykv/node$n.toml"
  mkdir -p "$WORK/tinykv"
  sed -e "s#^data_dir = .*#data_dir = \"$WORK/tinykv/node$n\"#" \
      -e 's/127\.0\.0\.1:2016\([1-3]\)/127.0.0.1:2116\1/' \
      -e 's/127\.0\.0\.1:808\([1-3]\)/127.0.0.1:1808\1/' \
      "configs/node$n.toml" > "$conf"
  # The same two steps, as docs/benchmarks.md shows them.
  sed -e "s/@N@/$n/g" >> "$WORK/servers.txt" <<'EOF'
sed -e "s#^data_dir = .*#data_dir = \"$TMP/tinykv/node@N@\"#" -e 's/127\.0\.0\.1:2016\([1-3]\)/127.0.0.1:2116\1/' -e 's/127\.0\.0\.1:808\([1-3]\)/127.0.0.1:1808\1/' configs/node@N@.toml > $TMP/tinykv/node@N@.toml
target/release/tinykv-server --config $TMP/tinykv/node@N@.toml > $TMP/tinykv@N@.log 2>&1 &
EOF
  "$SERVER" --config "$conf" > "$WORK/logs/tinykv$n.log" 2>&1 &
  PIDS+=($!)
  TINYKV_ENDPOINTS+=("http://127.0.0.1:${TINYKV_HTTP[$((n-1))]}")
done
for e in "${TINYKV_ENDPOINTS[@]}"; do
  wait_for 60 curl -fsS "$e/health" || die "TinyKV-rs node $e did not become healthy (see $WORK/logs)"
done
for e in "${TINYKV_ENDPOINTS[@]}"; do
  wait_for 60 curl -fsS -X PUT --data-binary ready "$e/v1/kv/bench-ready" \
    || die "TinyKV-rs at $e does not accept writes (see $WORK/logs)"
done
TINYKV_VERSION=$("$SERVER" --version 2>/dev/null || echo "tinykv-server")

for workload in $BENCH_WORKLOADS; do
  run_workload tinykv TinyKV-rs "$(join_by , "${TINYKV_ENDPOINTS[@]}")" "$workload"
done
log "stopping TinyKV-rs"
stop_all

# ---------------------------------------------------------------- etcd
ETCD_LABEL="etcd"
if [ "$BENCH_SKIP_ETCD" != 1 ]; then
  ETCD_LABEL="etcd $ETCD_VERSION"
  log "starting a 3-member etcd $ETCD_VERSION cluster in $WORK/etcd"
  cluster="e1=http://127.0.0.1:${ETCD_PEER[0]},e2=http://127.0.0.1:${ETCD_PEER[1]},e3=http://127.0.0.1:${ETCD_PEER[2]}"
  ETCD_ENDPOINTS=()
  for n in 1 2 3; do
    client="http://127.0.0.1:${ETCD_CLIENT[$((n-1))]}"
    peer="http://127.0.0.1:${ETCD_PEER[$((n-1))]}"
    args=(--name "e$n" --data-dir "$WORK/etcd/e$n"
      --listen-client-urls "$client" --advertise-client-urls "$client"
      --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer"
      --initial-cluster "$cluster" --initial-cluster-state new
      --initial-cluster-token tinykv-bench --logger zap --log-outputs stderr)
    echo "$(shquote etcd "${args[@]}") > \$TMP/etcd$n.log 2>&1 &" >> "$WORK/servers.txt"
    etcd "${args[@]}" > "$WORK/logs/etcd$n.log" 2>&1 &
    PIDS+=($!)
    ETCD_ENDPOINTS+=("$client")
  done
  etcd_healthy() { curl -fsS "$1/health" | grep -q '"health":"true"'; }
  etcd_put() { curl -fsS -X POST -d '{"key":"YmVuY2gtcmVhZHk=","value":"cmVhZHk="}' "$1/v3/kv/put"; }
  for e in "${ETCD_ENDPOINTS[@]}"; do
    wait_for 60 etcd_healthy "$e" || die "etcd member $e did not become healthy (see $WORK/logs)"
    wait_for 60 etcd_put "$e" || die "etcd at $e does not accept writes (see $WORK/logs)"
  done
  for workload in $BENCH_WORKLOADS; do
    run_workload etcd "$ETCD_LABEL" "$(join_by , "${ETCD_ENDPOINTS[@]}")" "$workload"
  done
  log "stopping etcd"
  stop_all
fi

# ---------------------------------------------------------------- docs/benchmarks.md
log "writing $BENCH_OUT"
title_of() {
  case "$1" in
    write) echo "Write-only (100% writes)" ;;
    a) echo "YCSB-A (50% reads, 50% updates)" ;;
    b) echo "YCSB-B (95% reads, 5% updates)" ;;
    c) echo "YCSB-C (100% reads)" ;;
    *) echo "Workload $1" ;;
  esac
}
cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
mem=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
os=$( (. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME") || uname -s)
fs=$(df -T "$WORK" | awk 'NR == 2 { print $2 " on " $1 }')
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain 2>/dev/null)" ]; then commit="$commit (with uncommitted changes)"; fi

{
  cat <<EOF
# Benchmarks: TinyKV-rs and etcd side by side

Generated by \`make bench\` (\`.ci/bench.sh\`) on $(date -u '+%Y-%m-%d %H:%M UTC'). Rerun it to
refresh this page; every number below comes from that one run.

## What is measured

Two 3-node clusters on loopback, on the same machine as the load generator, each started
fresh with empty data directories: TinyKV-rs (\`configs/node1..3.toml\` on other ports) and
etcd. Both acknowledge a write only once a majority has fsynced it (TinyKV-rs fsyncs the
raft log; etcd fsyncs its WAL, its default), and both serve linearizable reads (TinyKV-rs
through ReadIndex; etcd's range requests are linearizable unless \`serializable\` is set,
and it is not). One system runs at a time: TinyKV-rs runs every workload, is stopped, then
etcd does.

The client is \`tinykv-bench\` (\`src/bin/tinykv_bench/\`): closed loop, ${BENCH_CLIENTS} clients spread
round-robin over the three nodes, each sending its next request as soon as the previous
one is answered, over HTTP/1.1 keep-alive connections. The key space is ${BENCH_KEYS} keys
(\`bench-0000\`…), chosen uniformly; values are ${BENCH_VALUE_SIZE} bytes. Before the read workloads every key is
written once (\`--preload\`), so reads find their key. Each run warms up for ${BENCH_WARMUP} (not
measured), then measures for ${BENCH_DURATION}. TinyKV-rs is driven through its REST API
(\`PUT\`/\`GET /v1/kv/{key}\`), etcd through its v3 JSON gateway (\`POST /v3/kv/put\`,
\`/v3/kv/range\`, base64 keys and values): REST against REST. The gateway translates each
request to gRPC inside etcd, so etcd's native gRPC clients would see more throughput and
lower latency than shown here. The load generator and the three nodes share the
machine's cores, so on a small machine these numbers say as much about CPU per request as
about the disk or the network.

Latency is per request, from send to the end of the response, in milliseconds; throughput
is successful operations per second. In the ratio rows (ours/etcd) above 1 means more
throughput, or more latency, than etcd. On a small or shared machine repeated runs differ
by tens of percent, tail latencies most (the load average below tells how busy the machine
was): compare the two systems within one run rather than numbers across runs.

## Machine

| | |
|---|---|
| CPU | ${cpu_model} |
| cores (\`nproc\`) | $(nproc) |
| memory | ${mem} |
| OS, kernel | ${os}, $(uname -r) |
| data directories | ${fs} |
| load average (1, 5, 15 min) when the script started | ${LOAD_BEFORE} |

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
  cat <<EOF
| load generator | tinykv-bench $("$BENCH" --version | awk '{ print $2 }') |

## Results

EOF
  for workload in $BENCH_WORKLOADS; do
    ours="$WORK/results/tinykv-$workload.json"
    theirs="$WORK/results/etcd-$workload.json"
    if [ -f "$theirs" ]; then
      "$BENCH" compare "$ours" "$theirs" --title "$(title_of "$workload")"
    else
      "$BENCH" compare "$ours" --title "$(title_of "$workload")"
    fi
    echo
  done
  cat <<EOF
## Reproducing

\`\`\`sh
make bench BENCH_DURATION=${BENCH_DURATION}   # or: BENCH_DURATION=${BENCH_DURATION} bash .ci/bench.sh
\`\`\`

Other knobs: \`BENCH_WARMUP\`, \`BENCH_CLIENTS\`, \`BENCH_KEYS\`, \`BENCH_VALUE_SIZE\`,
\`BENCH_WORKLOADS\` (default \`write a b c\`), \`BENCH_SKIP_ETCD=1\`, \`BENCH_KEEP=1\` (keep
the temp dir with logs and JSON results). The script runs (each server in the background,
waiting until every node answers \`/health\` and accepts a write):

\`\`\`sh
$CARGO build --release --bin tinykv-server --bin tinykv-bench
TMP=\$(mktemp -d); mkdir -p \$TMP/tinykv \$TMP/results
$(sed "s#$WORK/#\\\$TMP/#g" "$WORK/servers.txt")
\`\`\`

and then, against each cluster in turn:

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
mv "$BENCH_OUT.tmp" "$BENCH_OUT"

OK=1
log "done: $BENCH_OUT"
sed -n '/^## Results/,/^## Reproducing/p' "$BENCH_OUT" | sed '$d'
