#!/usr/bin/env bash
# `make bench-scale`: what a region costs, at rest and under load; writes the "Scale"
# section of docs/benchmarks.md.
#
# For each region count N in SCALE_REGIONS (1 1000 10000), on a fresh 3-node cluster of
# the release build on loopback (3 replicas of every region):
#   1. splits the key space of SCALE_KEYS keys (tinykv-bench's `bench-NNNNNN`) into N
#      regions with the admin split API (batch splits of 1,000 keys), and times it;
#   2. lets the cluster settle, then measures each node's CPU over SCALE_IDLE seconds of
#      idleness (from /proc: user + system time) and its resident memory, and counts the
#      peers asleep (`tinykv_raft_hibernating_peers`);
#   3. kills the node leading the most regions (SCALE_RESTART) with SIGKILL, starts it
#      again over its data and times until it serves:
#      `/health` answers and a read through it of a key in each of SCALE_PROBES regions
#      spread over the key space succeeds;
#   4. runs tinykv-bench's write-only workload (64 clients, keys uniform over the whole
#      key space, so over all N regions) for SCALE_LOAD seconds against the three nodes;
#   5. for N up to SCALE_MERGE: restarts the cluster with the PD's split-merge interval
#      at 1 s (it is an hour by default, so nothing merges during 1-4) and its merge
#      size limit at 16 MiB (above the data written, below the 32 MiB split size), and
#      times until the placement driver has merged the N regions back into one.
#
# Knobs: SCALE_REGIONS, SCALE_KEYS (100000), SCALE_IDLE (30), SCALE_LOAD (20),
# SCALE_PROBES (50), SCALE_MERGE (1000), SCALE_RESTART (`leader`, the node leading the most
# regions, the slowest to restart: one node usually leads nearly all of them; or a node's
# number), BENCH_OUT (docs/benchmarks.md), and for
# experiments SCALE_ENV, settings every node starts with (`TINYKV__SECTION__KEY=value ...`),
# and SCALE_SERVER, another server binary to measure (an A/B of a build change), for
# profiling SCALE_WRAP, a command every node runs under, `{n}` standing for the node's
# number (e.g. `heaptrack -o /tmp/heap-node{n}`); a profiled run stops after the idle
# measurement (step 2).
# SCALE_LOAD_PERF=FILE samples the whole machine with `perf record` (cpu-clock, every
# thread) over the write load after its warm-up, into FILE-N for N regions (read it with
# `perf report -i FILE-N --sort comm,sym`); SCALE_LOAD_PERF_ARGS are perf's sampling
# options (`-F 999`, no call graphs; `-F 249 --call-graph dwarf,32768` for stacks).
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO=${CARGO:-cargo}
SCALE_REGIONS=${SCALE_REGIONS:-"1 1000 10000"}
SCALE_KEYS=${SCALE_KEYS:-100000}
SCALE_IDLE=${SCALE_IDLE:-30}
SCALE_LOAD=${SCALE_LOAD:-20}
SCALE_PROBES=${SCALE_PROBES:-50}
SCALE_MERGE=${SCALE_MERGE:-1000}
SCALE_RESTART=${SCALE_RESTART:-leader}
# tinykv-bench's warm-up before it measures, in seconds: the per-write figures count the
# writes of the warm-up too (at the measured rate), as the metrics and CPU time do.
WARMUP=3
BENCH_OUT=${BENCH_OUT:-docs/benchmarks.md}
SERVER=${SCALE_SERVER:-target/release/tinykv-server}
BENCH=target/release/tinykv-bench
HTTP=(18081 18082 18083)
CLK_TCK=$(getconf CLK_TCK)

NAME=scale
# shellcheck source=.ci/lib.sh
. .ci/lib.sh

# A node run under SCALE_WRAP is the wrapper's child, which stopping the wrapper leaves
# running: stop_all stops it by its config file too.
eval "lib_$(declare -f stop_all)"
stop_all() {
  lib_stop_all
  [ -z "${SCALE_WRAP:-}" ] || pkill -9 -f -- "$WORK/n[0-9]*/node[1-3].toml" || true
}

now_ms() { date +%s%3N; }
url() { echo "http://127.0.0.1:${HTTP[$(($1 - 1))]}"; }
width=$(( ${#SCALE_KEYS} - 1 ))
[ "$width" -ge 1 ] || width=1
key() { printf 'bench-%0*d' "$width" "$1"; }

log "building the release binaries"
$CARGO build --release --bin tinykv-server --bin tinykv-bench >&2

# start_cluster DIR [ENV...]: the three nodes over DIR, with the environment settings
# ENV (TINYKV__SECTION__KEY=value) if any.
start_cluster() {
  local dir=$1 n
  shift
  for n in 1 2 3; do
    # The node logs run on across clusters: what this one logged starts after this line.
    LOG_FROM[$n]=0
    [ ! -f "$WORK/node$n.log" ] || LOG_FROM[$n]=$(wc -l < "$WORK/node$n.log")
    tinykv_config "$n" "$dir"
    local wrap=${SCALE_WRAP:-}
    wrap=${wrap//\{n\}/$n}
    CMD[$n]="env ${SCALE_ENV:-} $* $wrap $SERVER --config $dir/node$n.toml"
    start "$n"
  done
  for n in 1 2 3; do
    wait_for 60 curl -fsS "$(url "$n")/health" || die "node $n did not become healthy"
    wait_for 60 curl -fsS -X PUT --data-binary ready "$(url "$n")/v1/kv/bench-ready" || die "node $n takes no writes"
  done
}

# The id of the region holding KEY, as node 1 sees it.
region_of() {
  curl -fsS "$(url 1)/v1/admin/regions" | python3 -c '
import json, sys, urllib.parse
key = sys.argv[1].encode()
for r in json.load(sys.stdin)["regions"]:
    start = urllib.parse.unquote_to_bytes(r["start_key"])
    end = urllib.parse.unquote_to_bytes(r["end_key"])
    if start <= key and (not end or key < end):
        print(r["id"]); break' "$1"
}

# split_into N: N regions over the bench keys (plus the ones below and above them), made
# by batch splits of up to 1,000 keys each (the API's limit): each batch cuts the last
# region, the one the previous batch left at the end of the key space.
split_into() {
  local n=$1 i j id keys
  [ "$n" -gt 1 ] || return 0
  id=$(region_of "$(key 0)")
  for ((i = 1; i < n; i += 1000)); do
    keys=()
    for ((j = i; j < n && j < i + 1000; j++)); do
      keys+=("\"$(key $((j * SCALE_KEYS / n)))\"")
    done
    id=$(curl -fsS -X POST -H 'content-type: application/json' \
      -d "{\"keys\":[$(IFS=,; echo "${keys[*]}")]}" \
      "$(url 1)/v1/admin/regions/$id/split" \
      | python3 -c 'import json, sys; print(json.load(sys.stdin)["regions"][-1]["id"])') \
      || die "the split of keys $i.. failed"
  done
}

# The number of regions node N holds a peer of (the meta region included).
local_regions() {
  curl -fsS "$(url "$1")/v1/admin/regions" | python3 -c '
import json, sys
print(len(json.load(sys.stdin)["regions"]))'
}

# Whether every node holds one data region beside the meta region (a node starts with
# every region it held, so this cannot pass before the merges).
merged_back() {
  local n
  for n in 1 2 3; do [ "$(local_regions "$n")" = 2 ] || return 1; done
}

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
rss_mib() { awk '/^VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }
# The engine's memtables and block cache on node N, in MiB (tinykv_engine_memory_bytes).
engine_mib() {
  curl -fsS "$(url "$1")/metrics" | awk '/^tinykv_engine_memory_bytes/ { sum += $2 } END { printf "%.0f", sum / 1048576 }'
}
asleep() { curl -fsS "$(url "$1")/metrics" | awk '/^tinykv_raft_hibernating_peers / { print $2 }'; }
leaders() { curl -fsS "$(url "$1")/metrics" | awk '/^tinykv_store_leaders/ { print $2 }'; }
backlog() { curl -fsS "$(url "$1")/metrics" | awk '/^tinykv_router_inbound_queued_max / { print $2 }'; }
# per_write DIR OPS: what the three nodes did per write between DIR's metrics-before-N.txt
# and metrics-after-N.txt (the write load, its warm-up included): raft messages sent by
# type, readies handled, peers put to sleep and woken.
per_write() {
  python3 - "$1" "$2" "$((SCALE_LOAD + WARMUP))" <<'PY'
import collections, re, sys
d, ops, secs = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
def read(name):
    out = collections.Counter()
    for n in (1, 2, 3):
        for line in open(f"{d}/{name}-{n}.txt"):
            m = re.match(r'(tinykv_raft_(?:messages_sent_total|ready_handled_total|hibernation_transitions_total)(?:\{[^}]*\})?) ([0-9.e+]+)$', line)
            if m:
                out[m.group(1)] += float(m.group(2))
    return out
before, after = read("metrics-before"), read("metrics-after")
writes = max(ops * secs, 1)
parts = []
for k in sorted(after):
    v = (after[k] - before[k]) / writes
    if v >= 0.05:
        label = re.sub(r'tinykv_raft_|_total|type=|to=|"', '', k)
        parts.append(f"{label} {v:.2f}")
print(", ".join(parts))
PY
}
pd_host() {
  local n
  for n in 1 2 3; do
    # grep reads to the end (no -q): under pipefail, tail cut off by an early exit fails.
    [ "$(tail -n +"$((LOG_FROM[n] + 1))" "$WORK/node$n.log" | grep -c 'splitting the meta region')" = 0 ] || echo "$n"
  done | tail -1
}

# serves N: the restarted node answers /health and a read of a key in each probed region.
serves() {
  local n=$1 i
  curl -fsS "$(url "$RESTARTED")/health" > /dev/null || return 1
  for ((i = 0; i < SCALE_PROBES; i++)); do
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' "$(url "$RESTARTED")/v1/kv/$(key $((i * SCALE_KEYS / SCALE_PROBES)))")
    [ "$code" = 200 ] || [ "$code" = 404 ] || return 1
  done
}

ROWS=()
for n in $SCALE_REGIONS; do
  dir="$WORK/n$n"
  log "$n regions: starting a fresh cluster"
  start_cluster "$dir"
  t0=$(now_ms)
  split_into "$n"
  split_s=$(awk -v ms=$(($(now_ms) - t0)) 'BEGIN { printf "%.1f", ms / 1000 }')
  log "$n regions: made in ${split_s}s; settling"
  sleep 10
  declare -A before
  for i in 1 2 3; do before[$i]=$(cpu_ticks "${PID[$i]}"); done
  sleep "$SCALE_IDLE"
  cpu=() rss=() sleeping=() leading=() queued=()
  for i in 1 2 3; do
    cpu+=("$(awk -v a="${before[$i]}" -v b="$(cpu_ticks "${PID[$i]}")" -v hz="$CLK_TCK" -v s="$SCALE_IDLE" \
      'BEGIN { printf "%.1f", 100 * (b - a) / hz / s }')")
    rss+=("$(rss_mib "${PID[$i]}") ($(engine_mib "$i"))")
    sleeping+=("$(asleep "$i")")
    leading+=("$(leaders "$i")")
    queued+=("$(backlog "$i")")
  done
  log "$n regions: idle CPU ${cpu[*]} %, RSS ${rss[*]} MiB, asleep ${sleeping[*]}, leaders ${leading[*]}, most raft messages queued at the Router ${queued[*]}, PD on node $(pd_host)"

  if [ -n "${SCALE_WRAP:-}" ]; then
    log "$n regions: profiled run, stopping here"
    stop_all
    continue
  fi
  r=$SCALE_RESTART
  if [ "$r" = leader ]; then
    r=1
    for i in 2 3; do [ "${leading[$((i - 1))]}" -le "${leading[$((r - 1))]}" ] || r=$i; done
  fi
  RESTARTED=$r
  kill -9 "${PID[$r]}"; wait "${PID[$r]}" 2>/dev/null || true
  t0=$(now_ms)
  start "$r"
  wait_for 120 serves "$n" || die "node $r did not serve again within 120 s"
  restart_s=$(awk -v ms=$(($(now_ms) - t0)) 'BEGIN { printf "%.1f", ms / 1000 }')
  log "$n regions: node $r serves again after ${restart_s}s"

  endpoints="$(url 1),$(url 2),$(url 3)"
  for i in 1 2 3; do
    curl -fsS "$(url "$i")/metrics" > "$dir/metrics-before-$i.txt"
    before[$i]=$(cpu_ticks "${PID[$i]}")
  done
  load_t0=$(now_ms)
  "$BENCH" --endpoints "$endpoints" --workload write --keys "$SCALE_KEYS" --clients 64 \
    --duration "${SCALE_LOAD}s" --warmup "${WARMUP}s" --quiet --json "$dir/bench.json" > "$dir/bench.txt" 2> "$dir/bench.err" &
  bench_pid=$!
  if [ -n "${SCALE_LOAD_PERF:-}" ]; then
    # shellcheck disable=SC2086 # the options are words of their own
    (sleep "$WARMUP" && perf record -q -a -e cpu-clock ${SCALE_LOAD_PERF_ARGS:--F 999} -o "$SCALE_LOAD_PERF-$n" -- sleep "$((SCALE_LOAD - 1))") &
  fi
  # The bench's own CPU, read just before it exits (it stays a zombie until waited for).
  bench_ticks=0
  while kill -0 "$bench_pid" 2> /dev/null && [ -r "/proc/$bench_pid/stat" ]; do
    t=$(cpu_ticks "$bench_pid" 2> /dev/null) && bench_ticks=$t
    sleep 0.2
  done
  wait "$bench_pid" || die "tinykv-bench failed (see $dir/bench.err)"
  load_s=$(awk -v ms=$(($(now_ms) - load_t0)) 'BEGIN { print ms / 1000 }')
  server_ticks=0
  for i in 1 2 3; do server_ticks=$((server_ticks + $(cpu_ticks "${PID[$i]}") - before[$i])); done
  ops=$(awk '/"op": "all"/ { all = 1 } all && /"throughput"/ { gsub(/[^0-9.]/, "", $2); printf "%.0f", $2; exit }' "$dir/bench.json")
  p999=$(awk '/"op": "all"/ { all = 1 } all && /"p999_ms"/ { gsub(/[^0-9.]/, "", $2); print $2; exit }' "$dir/bench.json")
  log "$n regions: $ops writes/s, p99.9 ${p999} ms"
  log "$n regions: CPU over the load (${load_s}s): servers $(awk -v t="$server_ticks" -v hz="$CLK_TCK" -v s="$load_s" \
    'BEGIN { printf "%.0f%% of one core", 100 * t / hz / s }'), tinykv-bench $(awk -v t="$bench_ticks" -v hz="$CLK_TCK" -v s="$load_s" \
    'BEGIN { printf "%.0f%%", 100 * t / hz / s }'); servers' CPU per write $(awk -v t="$server_ticks" -v hz="$CLK_TCK" -v ops="$ops" -v s="$((SCALE_LOAD + WARMUP))" \
    'BEGIN { printf "%.0f us", 1e6 * t / hz / (ops * s) }')"
  for i in 1 2 3; do curl -fsS "$(url "$i")/metrics" > "$dir/metrics-after-$i.txt"; done
  log "$n regions, per write during the load: $(per_write "$dir" "$ops")"
  merge_s=-
  if [ "$n" -gt 1 ] && [ "$n" -le "$SCALE_MERGE" ]; then
    stop_all
    start_cluster "$dir" TINYKV__PD__SPLIT_MERGE_INTERVAL_MS=1000 \
      TINYKV__PD__MAX_MERGE_REGION_SIZE=$((16 << 20))
    t0=$(now_ms)
    # One data region and the meta region.
    wait_for 1800 merged_back || die "the $n regions did not merge back within 30 min"
    merge_s=$(awk -v ms=$(($(now_ms) - t0)) 'BEGIN { printf "%.1f", ms / 1000 }')
    log "$n regions: merged back into one in ${merge_s}s"
  fi
  ROWS+=("| $n | $split_s | ${cpu[0]} / ${cpu[1]} / ${cpu[2]} | ${rss[0]} / ${rss[1]} / ${rss[2]} | ${sleeping[0]} / ${sleeping[1]} / ${sleeping[2]} | $restart_s | $ops | $p999 | $merge_s |")
  stop_all
done

section() {
  cat <<EOF
<!-- scale:begin -->
## Scale: many regions at rest and under load

Generated by \`make bench-scale\` (\`.ci/scale.sh\`) on $(date -u '+%Y-%m-%d %H:%M UTC'),
commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), on $(nproc) cores
($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo).
A fresh 3-node cluster of the release build per row, every region with 3 replicas, split
with the admin API over ${SCALE_KEYS} keys (batch splits of 1,000 keys, one after another). Idle CPU is each node's user + system time over
${SCALE_IDLE} s with no client, in % of one core; RSS after that, and in brackets the part of
it that is the engine's memtables and block cache (\`tinykv_engine_memory_bytes\`); "asleep" counts the peers
hibernating at the end. Restart: the node leading the most regions (\`SCALE_RESTART=${SCALE_RESTART}\`) killed with SIGKILL and started again, until it
answers \`/health\` and reads of keys in ${SCALE_PROBES} regions spread over the key space.
Writes: tinykv-bench, write-only, 64 clients, keys uniform over all regions, ${SCALE_LOAD} s.
Merge back: the cluster restarted with \`pd.split_merge_interval_ms\` at 1 s and
\`pd.max_merge_region_size\` at 16 MiB (more than the keys just written), until the
placement driver has merged the regions back into one; up to ${SCALE_MERGE} regions.

| regions | splits, s | idle CPU per node, % | RSS (engine caches) per node, MiB | peers asleep per node | restart to serving, s | writes/s | write p99.9 ms | merge back, s |
|---:|---:|---|---|---|---:|---:|---:|---:|
EOF
  printf '%s\n' "${ROWS[@]}"
  echo '<!-- scale:end -->'
}
section > "$WORK/section.md"
write_section scale "$WORK/section.md"
cat "$WORK/section.md"
log "wrote the scale section of $BENCH_OUT"
