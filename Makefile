# TinyKV-rs — build, run a local 3-node cluster, test.
#
#   make run     build (release) and start the 3-node cluster from configs/ in the background
#                (plaintext HTTP on loopback)
#   make certs   make a CA and certificates for a local cluster in certs/ (stores 1-4, user
#                admin); keeps those that exist
#   make run-tls the same 3 nodes with TLS: each config layered with configs/tls/nodeN.toml
#                (HTTPS on the client port, mutual TLS between nodes; certs from make certs)
#   make join    start a 4th node (configs/node4.toml) that joins the running cluster
#   make stop    stop it (every node started by run, run-tls or join)
#   make test    run the whole test suite (unit, in-process scenarios, multi-process)
#   make bench   benchmark a fresh 3-node cluster against a 3-member etcd, plaintext and TLS
#                (BENCH_DURATION=20s per workload; wrk cross-check) and write
#                docs/benchmarks.md; see .ci/bench.sh
#   make chaos   chaos run against real processes (5 nodes, 5 minutes; CHAOS_ARGS to change),
#                checked for linearizability; artifacts in chaos-out/
#   make clean-data  delete the local cluster's data

CARGO      ?= cargo
RUN_DIR    ?= data
NODES      := 1 2 3
SERVER     := target/release/tinykv-server
CTL        := target/release/tinykv-ctl
CERTS_DIR  := certs
NEXTEST    := $(CARGO) nextest run --workspace --config-file .ci/nextest.toml

BENCH_DURATION ?= 20s
CHAOS_ARGS     ?= --nodes 5 --duration 5m --clients 16 --keys 8

.PHONY: build certs run run-tls join stop status test bench chaos clean-data

build:
	$(CARGO) build --release --bin tinykv-server --bin tinykv-ctl

run: build
	@mkdir -p $(RUN_DIR)
	@for n in $(NODES); do \
	  if [ -f $(RUN_DIR)/node$$n.pid ] && kill -0 $$(cat $(RUN_DIR)/node$$n.pid) 2>/dev/null; then \
	    echo "node$$n already running (pid $$(cat $(RUN_DIR)/node$$n.pid))"; \
	  else \
	    nohup $(SERVER) --config configs/node$$n.toml >> $(RUN_DIR)/node$$n.log 2>&1 & \
	    echo $$! > $(RUN_DIR)/node$$n.pid; \
	    echo "node$$n started (pid $$!, log $(RUN_DIR)/node$$n.log)"; \
	  fi; \
	done
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
	@for n in $(NODES); do \
	  if [ -f $(RUN_DIR)/node$$n.pid ] && kill -0 $$(cat $(RUN_DIR)/node$$n.pid) 2>/dev/null; then \
	    echo "node$$n already running (pid $$(cat $(RUN_DIR)/node$$n.pid))"; \
	  else \
	    nohup $(SERVER) --config configs/node$$n.toml --config configs/tls/node$$n.toml >> $(RUN_DIR)/node$$n.log 2>&1 & \
	    echo $$! > $(RUN_DIR)/node$$n.pid; \
	    echo "node$$n started with TLS (pid $$!, log $(RUN_DIR)/node$$n.log)"; \
	  fi; \
	done
	@echo "HTTPS endpoints: https://127.0.0.1:8081  https://127.0.0.1:8082  https://127.0.0.1:8083"
	@echo "try: curl --cacert $(CERTS_DIR)/ca.pem -X PUT --data-binary world https://127.0.0.1:8081/v1/kv/hello && curl --cacert $(CERTS_DIR)/ca.pem https://127.0.0.1:8083/v1/kv/hello"
	@echo "     $(CTL) --cacert $(CERTS_DIR)/ca.pem cluster"

join: build
	@mkdir -p $(RUN_DIR)
	@if [ -f $(RUN_DIR)/node4.pid ] && kill -0 $$(cat $(RUN_DIR)/node4.pid) 2>/dev/null; then \
	  echo "node4 already running (pid $$(cat $(RUN_DIR)/node4.pid))"; \
	else \
	  nohup $(SERVER) --config configs/node4.toml >> $(RUN_DIR)/node4.log 2>&1 & \
	  echo $$! > $(RUN_DIR)/node4.pid; \
	  echo "node4 started (pid $$!, log $(RUN_DIR)/node4.log); it joins through nodes 1-3"; \
	fi
	@echo "watch it receive replicas: target/release/tinykv-ctl cluster"

stop:
	@for n in $(NODES) 4; do \
	  if [ -f $(RUN_DIR)/node$$n.pid ]; then \
	    kill $$(cat $(RUN_DIR)/node$$n.pid) 2>/dev/null && echo "node$$n stopped" || echo "node$$n was not running"; \
	    rm -f $(RUN_DIR)/node$$n.pid; \
	  fi; \
	done

# Each node's /health: over HTTP, else (a run-tls node) over HTTPS with certs/ca.pem.
status:
	@for n in $(NODES) $$([ -f $(RUN_DIR)/node4.pid ] && echo 4); do \
	  curl -sS http://127.0.0.1:808$$n/health 2>/dev/null && echo || \
	  { [ -f $(CERTS_DIR)/ca.pem ] && curl -sS --cacert $(CERTS_DIR)/ca.pem https://127.0.0.1:808$$n/health 2>/dev/null && echo " (TLS)"; } || \
	  echo "node$$n: down"; \
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

# Chaos against real processes, checked for linearizability (README, "Chaos testing"); exits
# non-zero unless the verdict is PASS. Release binaries: a long run needs the throughput.
chaos:
	$(CARGO) build --release -p tinykv -p tinykv-integration --bin tinykv-server --bin tinykv-chaos
	target/release/tinykv-chaos --out chaos-out $(CHAOS_ARGS)

clean-data: stop
	rm -rf $(RUN_DIR)
