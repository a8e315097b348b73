#!/usr/bin/env bash
# API fuzzing: schemathesis generates requests for every operation of the node's own
# OpenAPI document (GET /v1/openapi.json) and fails on any 5xx answer. Steps:
#
# 1. install a pinned schemathesis into a venv (target/schemathesis-venv), and Debian's
#    python3-venv first if `python3 -m venv` cannot work (root + apt-get only);
# 2. build tinykv-server and start one node from configs/single.toml, on free ports and
#    with a temporary data directory (an extra config file overrides the address book,
#    --data-dir the directory), and wait until it has elected itself and takes writes;
# 3. run schemathesis against it, bounded by FUZZ_MAX_EXAMPLES (20) cases per operation;
# 4. check that the node is still alive and healthy, then stop it with SIGTERM and check
#    that it shut down cleanly.
#
# Run by .ci/run after `make test`; by hand: `bash .ci/fuzz.sh`. On failure the node's log
# is printed. Environment: CARGO, FUZZ_MAX_EXAMPLES, FUZZ_VENV, FUZZ_SEED (reproduce a run),
# FUZZ_CHECKS (default not_a_server_error; `all` also checks answers against the spec).
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
CARGO="${CARGO:-cargo}"
VENV="${FUZZ_VENV:-$PWD/target/schemathesis-venv}"
MAX_EXAMPLES="${FUZZ_MAX_EXAMPLES:-20}"
CHECKS="${FUZZ_CHECKS:-not_a_server_error}"
SERVER="$PWD/target/debug/tinykv-server"

log() { echo "fuzz: $*" >&2; }

# ---------------------------------------------------------------- schemathesis
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "python3-venv is missing: installing it"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
  fi
fi
if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -qF "$SCHEMATHESIS_VERSION"; then
  log "installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

# ---------------------------------------------------------------- node
log "building tinykv-server"
"$CARGO" build --bin tinykv-server

tmp=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
  log "$*"
  log "node log (last 50 lines):"
  tail -n 50 "$tmp/node.log" >&2 || true
  exit 1
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
http_port=$(free_port)
raft_port=$(free_port)
# A later --config file overrides an earlier one: this replaces the address book.
cat > "$tmp/ports.toml" <<TOML
[[cluster.stores]]
id = 1
raft_addr = "127.0.0.1:$raft_port"
http_addr = "127.0.0.1:$http_port"
TOML
base="http://127.0.0.1:$http_port"

log "starting a single node on $base (data in $tmp/data)"
"$SERVER" --config configs/single.toml --config "$tmp/ports.toml" --data-dir "$tmp/data" \
  >"$tmp/node.log" 2>&1 &
pid=$!

# Up, and leading its region: a write succeeds (before that, requests wait for a leader).
ready=""
for _ in $(seq 1 60); do
  kill -0 "$pid" 2>/dev/null || fail "the node exited during start-up"
  if curl -fsS -o /dev/null -X PUT --data-binary ready "$base/v1/kv/fuzz-ready" 2>/dev/null; then
    ready=1
    break
  fi
  sleep 0.5
done
[ -n "$ready" ] || fail "the node did not take a write within 30 s"
# Ready as a whole: the placement driver vouches for every key (GET /health is 503
# until its leaders have reported, about two heartbeat intervals).
healthy=""
for _ in $(seq 1 60); do
  if curl -fsS -o /dev/null "$base/health" 2>/dev/null; then
    healthy=1
    break
  fi
  sleep 0.5
done
[ -n "$healthy" ] || fail "GET /health did not answer 200 within 30 s"

# ---------------------------------------------------------------- fuzz
log "schemathesis: checks $CHECKS, at most $MAX_EXAMPLES cases per operation"
seed_args=()
if [ -n "${FUZZ_SEED:-}" ]; then
  seed_args=(--seed "$FUZZ_SEED")
fi
# Run from the temp dir: hypothesis keeps its example database in ./.hypothesis.
status=0
(cd "$tmp" && "$VENV/bin/schemathesis" run "$base/v1/openapi.json" \
  --checks "$CHECKS" \
  --max-examples "$MAX_EXAMPLES" \
  --request-timeout 30 \
  --exclude-operation-id enableAuth \
  "${seed_args[@]}") || status=$?
[ "$status" = 0 ] || fail "schemathesis found failures (exit status $status)"

# ---------------------------------------------------------------- still alive?
kill -0 "$pid" 2>/dev/null || fail "the node died during the fuzzing"
curl -fsS "$base/health" >/dev/null || fail "the node no longer answers /health"
curl -fsS -o /dev/null -X PUT --data-binary after "$base/v1/kv/fuzz-after" \
  || fail "the node no longer takes writes"

log "stopping the node"
kill -TERM "$pid"
exit_status=0
wait "$pid" || exit_status=$?
pid=""
[ "$exit_status" = 0 ] || fail "the node did not shut down cleanly (exit status $exit_status)"
log "passed: no server errors, the node stayed up and shut down cleanly"
