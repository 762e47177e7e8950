# The two commands a newcomer needs (see README.md):
#   make run   build the binaries into ./bin and run the supervisor over the brief's sample task list
#   make test  install the test tools if missing, then formatting, lints and every test
# And the whole time service behind its front door (the proxy on 127.0.0.1:8080):
#   make run-proxied
# A cluster on loopback (etcd, an ubervisor, three supervisor nodes, the time service as jobs):
#   make cluster
# Prometheus over either, in another terminal (http://127.0.0.1:9091/):
#   make monitor
.PHONY: build-deps bin run run-proxied cluster monitor test test-deps bench bench-cluster clean

PORTS ?= 8000-8099
# The time servers' ports behind the proxy: clear of the proxy's own 8080.
PROXIED_PORTS ?= 8100-8199
# Clear of the Debian package's own 9090 (and the node exporter's 9100).
PROMETHEUS_ADDR ?= 127.0.0.1:9091
BINS := supervisor timeserver authserver proxy ubervisor
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Building needs protoc and the well-known protos (the etcd client of cluster mode).
build-deps:
	@missing=""; \
	command -v protoc >/dev/null || missing="$$missing protobuf-compiler"; \
	[ -e /usr/include/google/protobuf/descriptor.proto ] || missing="$$missing libprotobuf-dev"; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages needed to build:$$missing"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

bin: build-deps
	cargo build --release --locked $(addprefix --bin ,$(BINS))
	mkdir -p bin
	for b in $(BINS); do install -m 0755 target/release/$$b bin/$$b; done

run: bin
	./bin/supervisor --port-range=$(PORTS) --log=log/supervisor.log --dumpfile=run/supervisor.dump < etc/tasks.json

cluster: bin
	./scripts/cluster.sh

run-proxied: bin
	./bin/supervisor --port-range=$(PROXIED_PORTS) --log=log/supervisor.log --dumpfile=run/supervisor.dump < etc/timeservice.json

# Debian's prometheus over the running system, through the supervisor's GET /sd; its data in run/.
monitor:
	@command -v prometheus >/dev/null || { echo "make monitor needs prometheus: sudo apt-get install prometheus (or make test-deps)"; exit 1; }
	mkdir -p run/prometheus
	prometheus --config.file=etc/prometheus.yml --storage.tsdb.path=run/prometheus \
		--storage.tsdb.retention.time=2d --web.listen-address=$(PROMETHEUS_ADDR)

# Tests drive headless Chromium (dashboards), prometheus and promtool (metrics, config, rules),
# etcd (the cluster; etcd-client builds need protoc and the well-known protos);
# nextest runs them.
test-deps:
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	{ command -v promtool >/dev/null && command -v prometheus >/dev/null; } || missing="$$missing prometheus"; \
	command -v etcd >/dev/null || missing="$$missing etcd-server"; \
	command -v etcdctl >/dev/null || missing="$$missing etcd-client"; \
	command -v protoc >/dev/null || missing="$$missing protobuf-compiler"; \
	[ -e /usr/include/google/protobuf/descriptor.proto ] || missing="$$missing libprotobuf-dev"; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest

# The benchmarks' task program is a cargo root of its own (no_std, outside the workspace).
TASK := --manifest-path crates/bench-task/Cargo.toml

test: test-deps
	cargo fmt --all --check
	cargo fmt $(TASK) --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	cargo clippy $(TASK) --target-dir target/bench-task --locked -- -D warnings
	cargo nextest run --workspace --locked --no-fail-fast
	# The supervisor's tests once more, every supervisor tracking tasks without cgroups.
	SUPERVISOR_TEST_NO_CGROUPS=1 cargo nextest run -p supervisor --locked --no-fail-fast

bench:
	cargo run --release --locked -p bench --

# The cluster scheduler's rows (docs/BENCHMARKS.md): a 3-member etcd on loopback (etcd-server,
# as `make test-deps` installs it), real ubervisors, supervisors and timeservers; about 3 minutes.
bench-cluster: build-deps
	cargo build --release --locked --bin ubervisor --bin supervisor --bin timeserver --bin bench-cluster
	./target/release/bench-cluster --markdown target/bench-cluster.md

clean:
	cargo clean
	rm -rf bin out log run
