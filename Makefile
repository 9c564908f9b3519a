# Switchboard's two entry points: `make run` (run it) and `make test` (test it).
# Both install what they need (`make deps`) on a fresh Debian machine.
SHELL := /bin/bash
export CARGO_TARGET_DIR ?= $(HOME)/.cache/switchboard-target
# Test peers installed by `make deps` (the tests find them here).
export SWITCHBOARD_DEPS ?= $(CURDIR)/.deps
CARGO ?= cargo

.PHONY: deps build lint test fuzz run bench

deps:
	scripts/install-deps.sh

build: deps
	$(CARGO) build --workspace --all-targets

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test: deps lint
	$(CARGO) test --workspace
	scripts/fuzz.sh 8

# Every fuzzer for longer (FUZZ_SECONDS each; README, Hardening).
fuzz: deps
	scripts/fuzz.sh $${FUZZ_SECONDS:-600}

run: deps
	$(CARGO) run --release -- up -f examples/quickstart.yaml

# Gateway benchmark: Switchboard against direct calls to a near-free upstream and against
# ContextForge (README).
bench: deps
	scripts/install-contextforge.sh
	$(CARGO) build --release --example bench-upstream
	$(CARGO) bench --bench gateway
