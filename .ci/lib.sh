# Helpers shared by the benchmark scripts (.ci/failover.sh, .ci/scale.sh): processes that
# are killed on exit, waiting for a condition, and a local TinyKV-rs cluster on its own
# ports. Source it after setting NAME (the script's name, for messages); it sets WORK to
# a fresh directory for logs and data, kept after the run.
#
#   start N            runs CMD[N] in the background as node N (log: $WORK/nodeN.log)
#   stop_all           kills every node started (also on exit)
#   wait_for SECS CMD  runs CMD until it succeeds, at most SECS seconds
#   write_section MARK FILE  puts FILE into BENCH_OUT between <!-- MARK:begin --> and
#                      <!-- MARK:end --> (FILE holds both markers), replacing what was
#                      there, or appends it if the file has no such section
#   tinykv_config N DIR  writes DIR/nodeN.toml: configs/nodeN.toml with its data in DIR
#                      and the ports moved (raft 2116N, HTTP 1808N) off the defaults,
#                      so a cluster of `make run` on the same machine is left alone

log() { printf '\n==> %s\n' "$*" >&2; }
die() { printf '%s: %s\n' "$NAME" "$*" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tinykv-$NAME.XXXXXX")
declare -A PID CMD
stop_all() {
  local n
  for n in "${!PID[@]}"; do kill -9 "${PID[$n]}" 2>/dev/null || true; done
  for n in "${!PID[@]}"; do wait "${PID[$n]}" 2>/dev/null || true; done
  PID=()
}
trap 'stop_all; echo "$NAME: logs kept in $WORK" >&2' EXIT

wait_for() {
  local secs=$1; shift
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.1
  done
}

start() { bash -c "exec ${CMD[$1]}" >> "$WORK/node$1.log" 2>&1 & PID[$1]=$!; }

tinykv_config() {
  local n=$1 dir=$2
  mkdir -p "$dir"
  sed -e "s#^data_dir = .*#data_dir = \"$dir/node$n\"#" \
      -e 's/127\.0\.0\.1:2016\([1-3]\)/127.0.0.1:2116\1/' \
      -e 's/127\.0\.0\.1:808\([1-3]\)/127.0.0.1:1808\1/' \
      "configs/node$n.toml" > "$dir/node$n.toml"
}

write_section() {
  local mark=$1 file=$2
  if [ -f "$BENCH_OUT" ] && grep -q "<!-- $mark:begin -->" "$BENCH_OUT"; then
    awk -v f="$file" -v b="<!-- $mark:begin -->" -v e="<!-- $mark:end -->" \
      '$0 == b { while ((getline l < f) > 0) print l; skip = 1; next } $0 == e { skip = 0; next } !skip' \
      "$BENCH_OUT" > "$WORK/out.md"
    cp "$WORK/out.md" "$BENCH_OUT"
  else
    { echo; cat "$file"; } >> "$BENCH_OUT"
  fi
}
