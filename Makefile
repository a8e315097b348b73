# TinyKV-rs — build, run a local 3-node cluster, test.
#
#   make run     build (release) and start the 3-node cluster from configs/ in the background
#                (plaintext HTTP on loopback)
#   make certs   make a CA and certificates for a local cluster in certs/ (stores 1-4, user
#                admin); keeps those that exist
#   make run-tls the same 3 nodes with TLS: each config layered with configs/tls/nodeN.toml
#                (HTTPS on the client port, mutual TLS between nodes; certs from make certs)
#   make join    start a 4th node (configs/node4.toml) that joins the running cluster
#   make restart NODE=1   stop node 1 (however it was started) and start it again (TLS=1:
#                with its configs/tls overlay)
#   make stop    stop every local node (found by the port it listens on, so a node started
#                by hand is stopped too)
#   make status  each node's /health
#   make test    run the whole test suite (unit, in-process scenarios, multi-process)
#   make bench   benchmark a fresh 3-node cluster against a 3-member etcd, plaintext and TLS
#                (BENCH_DURATION=20s per workload; wrk cross-check) and write
#                docs/benchmarks.md; see .ci/bench.sh
#   make bench-failover  kill -9 the leader under 64 writers, TinyKV-rs and etcd side by
#                side, then rolling restarts with and without leader drains; the Failover
#                section of docs/benchmarks.md (see .ci/failover.sh)
#   make bench-hosts  a 3-node cluster on simulated hosts (one network namespace per
#                node; root), against loopback, and at LAN/WAN delays (tc netem, or a
#                userspace delay switch without it); the Simulated hosts section of
#                docs/benchmarks.md
#                (see .ci/hosts-bench.sh)
#   make bench-scale  1, 1,000 and 10,000 regions: idle CPU, memory, restart time, write
#                throughput; the Scale section of docs/benchmarks.md (see .ci/scale.sh)
#   make chaos   chaos runs against real processes, one per workload (kv, register, bank;
#                CHAOS_WORKLOADS, CHAOS_ARGS to change), checked for linearizability and
#                the bank's total; artifacts in chaos-out/<workload>/
#   make clean-data  delete the local cluster's data
#   make deploy-check  validate the deployment packaging in configs/deploy/ (Dockerfile,
#                compose, systemd unit, Kubernetes manifests) with the validators this
#                machine has; prints which ran and which were skipped (see
#                docs/deployment.md)

CARGO      ?= cargo
RUN_DIR    ?= data
NODES      := 1 2 3
SERVER     := target/release/tinykv-server
CTL        := target/release/tinykv-ctl
CERTS_DIR  := certs
NEXTEST    := $(CARGO) nextest run --workspace --config-file .ci/nextest.toml

BENCH_DURATION ?= 20s
CHAOS_ARGS     ?= --nodes 5 --duration 5m --clients 16 --keys 8

.PHONY: build certs run run-tls join restart stop status test bench bench-failover bench-hosts bench-scale chaos clean-data deploy-check

build:
	$(CARGO) build --release --bin tinykv-server --bin tinykv-ctl

# Shell functions the node targets share. A node is found by the client port it listens on
# (808N), through /proc, not by its pid file alone: a node restarted by hand, or one whose
# pid file is stale, is still found.
#   listener_pid PORT    the pid listening on 127.0.0.1:PORT (fails if none)
#   start_node N [TLS]   start node N in the background (with configs/tls/nodeN.toml if TLS=1)
#   stop_node N          stop node N (SIGTERM, then SIGKILL after 15 s) and wait for its port
define NODE_SH
listener_pid() { \
  local hex inode fd; hex=$$(printf ':%04X' "$$1"); \
  inode=$$(awk -v p="$$hex" '$$4 == "0A" && substr($$2, length($$2) - 4) == p { print $$10; exit }' /proc/net/tcp /proc/net/tcp6 2>/dev/null); \
  [ -n "$$inode" ] && [ "$$inode" != 0 ] || return 1; \
  for fd in /proc/[0-9]*/fd/*; do \
    if [ "$$(readlink "$$fd" 2>/dev/null)" = "socket:[$$inode]" ]; then fd=$${fd#/proc/}; echo "$${fd%%/*}"; return 0; fi; \
  done; return 1; }; \
start_node() { \
  local n=$$1 tls=$$2 pid extra=""; \
  if pid=$$(listener_pid 808$$n); then echo "node$$n already running (pid $$pid)"; echo $$pid > $(RUN_DIR)/node$$n.pid; return 0; fi; \
  if [ "$$tls" = 1 ]; then extra="--config configs/tls/node$$n.toml"; fi; \
  nohup $(SERVER) --config configs/node$$n.toml $$extra >> $(RUN_DIR)/node$$n.log 2>&1 & \
  echo $$! > $(RUN_DIR)/node$$n.pid; \
  echo "node$$n started$${extra:+ with TLS} (pid $$!, log $(RUN_DIR)/node$$n.log)"; }; \
stop_node() { \
  local n=$$1 pid i; \
  pid=$$(listener_pid 808$$n) || { [ -f $(RUN_DIR)/node$$n.pid ] && pid=$$(cat $(RUN_DIR)/node$$n.pid) && kill -0 $$pid 2>/dev/null; } || pid=""; \
  rm -f $(RUN_DIR)/node$$n.pid; \
  if [ -z "$$pid" ]; then return 1; fi; \
  kill $$pid 2>/dev/null; \
  for i in $$(seq 150); do kill -0 $$pid 2>/dev/null || break; sleep 0.1; done; \
  kill -0 $$pid 2>/dev/null && kill -9 $$pid 2>/dev/null; \
  for i in $$(seq 50); do listener_pid 808$$n >/dev/null || break; sleep 0.1; done; \
  echo "node$$n stopped (pid $$pid)"; }
endef

run: build
	@mkdir -p $(RUN_DIR)
	@$(NODE_SH); for n in $(NODES); do start_node $$n; done
	@echo "HTTP endpoints: http://127.0.0.1:8081  http://127.0.0.1:8082  http://127.0.0.1:8083"
	@echo "try: curl -X PUT --data-binary world http://127.0.0.1:8081/v1/kv/hello && curl http://127.0.0.1:8083/v1/kv/hello"

# A CA, node certificates for stores 1-4 (127.0.0.1, localhost, ::1) and user admin's
# client certificate; files that exist are kept, so this is cheap to repeat.
certs:
	$(CARGO) build --release --bin tinykv-ctl
	$(CTL) certs dev --dir $(CERTS_DIR) --stores 1,2,3,4

# Like run, with TLS. The nodes share run's data directories and pid files: stop a
# plaintext cluster first (make stop).
run-tls: build certs
	@mkdir -p $(RUN_DIR)
	@$(NODE_SH); for n in $(NODES); do start_node $$n 1; done
	@echo "HTTPS endpoints: https://127.0.0.1:8081  https://127.0.0.1:8082  https://127.0.0.1:8083"
	@echo "try: curl --cacert $(CERTS_DIR)/ca.pem -X PUT --data-binary world https://127.0.0.1:8081/v1/kv/hello && curl --cacert $(CERTS_DIR)/ca.pem https://127.0.0.1:8083/v1/kv/hello"
	@echo "     $(CTL) --cacert $(CERTS_DIR)/ca.pem cluster"

join: build
	@mkdir -p $(RUN_DIR)
	@$(NODE_SH); start_node 4
	@echo "node4 joins through nodes 1-3; watch it receive replicas: $(CTL) cluster"

# make restart NODE=N [TLS=1]: stop node N however it was started, and start it again.
restart: build
	@[ -n "$(NODE)" ] || { echo "usage: make restart NODE=1 (1-4; TLS=1 for a run-tls node)"; exit 2; }
	@mkdir -p $(RUN_DIR)
	@$(NODE_SH); stop_node $(NODE) || echo "node$(NODE) was not running"; start_node $(NODE) $(TLS)

stop:
	@$(NODE_SH); for n in $(NODES) 4; do stop_node $$n || true; done

# Each running node's /health: over HTTP, else (a run-tls node) over HTTPS with
# certs/ca.pem.
status:
	@$(NODE_SH); for n in $(NODES) 4; do \
	  if ! pid=$$(listener_pid 808$$n); then [ $$n = 4 ] || echo "node$$n: down"; continue; fi; \
	  printf 'node%s (pid %s): ' $$n $$pid; \
	  curl -sS http://127.0.0.1:808$$n/health 2>/dev/null && echo || \
	  { [ -f $(CERTS_DIR)/ca.pem ] && curl -sS --cacert $(CERTS_DIR)/ca.pem https://127.0.0.1:808$$n/health 2>/dev/null && echo " (TLS)"; } || \
	  echo "not answering"; \
	done

# The test command: builds the server binary the multi-process tests launch, then runs
# every test of the workspace with nextest (in parallel where it can).
test:
	$(CARGO) build --bin tinykv-server
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
	  $(NEXTEST); \
	else \
	  echo "cargo-nextest not found, using cargo test"; \
	  $(CARGO) test --workspace; \
	fi

# Side-by-side benchmark with etcd (installs Debian's etcd-server if it is missing); uses
# its own ports and a temp dir, so it runs beside `make run`. Not part of `make test`.
bench:
	BENCH_DURATION=$(BENCH_DURATION) CARGO="$(CARGO)" bash .ci/bench.sh

# Kill -9 the leader under 64 writers, TinyKV-rs and etcd side by side: errors, longest
# gap without a successful write, tail latency; the Failover section of docs/benchmarks.md.
bench-failover:
	CARGO="$(CARGO)" bash .ci/failover.sh

bench-hosts:
	CARGO="$(CARGO)" bash .ci/hosts-bench.sh

# What a region costs: 1, 1,000 and 10,000 regions on a 3-node cluster, idle CPU and RSS
# per node, restart-to-serving time, write throughput over all regions (SCALE_REGIONS
# overrides the counts); the Scale section of docs/benchmarks.md.
bench-scale:
	CARGO="$(CARGO)" bash .ci/scale.sh

# Chaos against real processes, checked for linearizability (README, "Chaos testing"); exits
# non-zero unless the verdict is PASS. Release binaries: a long run needs the throughput.
# One run per workload of CHAOS_WORKLOADS (kv, then the transactional register and bank),
# each with its own cluster and artifacts in chaos-out/<workload>/.
CHAOS_WORKLOADS ?= kv register bank
chaos:
	$(CARGO) build --release -p tinykv -p tinykv-integration --bin tinykv-server --bin tinykv-chaos
	set -e; for workload in $(CHAOS_WORKLOADS); do \
		target/release/tinykv-chaos --workload $$workload --out chaos-out/$$workload $(CHAOS_ARGS); \
	done

clean-data: stop
	rm -rf $(RUN_DIR)

# Static validators (systemd-analyze, kubernetes-validate, docker compose config,
# hadolint, shellcheck; pinned, installed once into ~/.cache/tinykv-deploy-check) and
# runtime checks that start the deployment's own configs in a private network namespace
# with an existing target/{release,debug}/tinykv-server (it builds nothing). Not part of
# `make test`.
deploy-check:
	bash configs/deploy/check.sh
