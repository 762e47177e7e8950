# The two commands a newcomer needs (see README.md):
#   make run   build the binaries into ./bin and run the supervisor over the brief's sample task list
#   make test  formatting, lints and every test
.PHONY: bin run test bench clean

PORTS ?= 8000-8099
BINS := supervisor timeserver authserver

bin:
	cargo build --release --locked $(addprefix --bin ,$(BINS))
	mkdir -p bin
	for b in $(BINS); do install -m 0755 target/release/$$b bin/$$b; done

run: bin
	./bin/supervisor --port-range=$(PORTS) --log=log/supervisor.log --dumpfile=run/supervisor.dump < etc/tasks.json

test:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	cargo nextest run --workspace --locked --no-fail-fast

clean:
	cargo clean
	rm -rf bin out log run
