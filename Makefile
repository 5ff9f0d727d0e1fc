# logdrop: `make demo` and `make test` do all the set-up on a fresh machine.
SHELL := /bin/bash
VENV := .venv
PIP := $(VENV)/bin/pip
EVENT ?= events/s3-put.json

SIDECAR_TARGET ?= x86_64-unknown-linux-musl

.PHONY: all venv test lint demo invoke build sidecar bench lock clean

all: test

# Python tools (moto's server, cfn-lint), pinned, in a project-local venv.
venv: $(VENV)/.installed
$(VENV)/.installed: requirements-dev.txt requirements-lock.txt
	python3 -m venv $(VENV)
	$(PIP) install --quiet --disable-pip-version-check -r requirements-dev.txt -c requirements-lock.txt
	touch $@

lint: venv
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	$(VENV)/bin/cfn-lint template.yaml

test: lint
	cargo test --tests

demo: venv
	cargo build --release --bins
	scripts/with-moto.sh scripts/demo.sh

# Runs the handler once on EVENT against whatever AWS the environment names
# (AWS_PROFILE/credentials, or AWS_ENDPOINT_URL for a local emulator).
invoke:
	cargo run --release --bin shipper -- invoke --event $(EVENT)

# The Lambda artifact: target/lambda/shipper/bootstrap for arm64 (Graviton),
# and the static sidecar (see `sidecar`).
build: $(VENV)/.build-installed sidecar
	rustup target add aarch64-unknown-linux-gnu
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" cargo lambda build --release --arm64 --bin shipper

# The sidecar as one static binary (musl, linked by cargo-lambda's zig):
# target/sidecar-$(SIDECAR_TARGET). For Graviton tasks: SIDECAR_TARGET=aarch64-unknown-linux-musl.
sidecar: $(VENV)/.build-installed
	rustup target add $(SIDECAR_TARGET)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" cargo lambda build --release --bin sidecar --target $(SIDECAR_TARGET)
	cp target/lambda/sidecar/bootstrap target/sidecar-$(SIDECAR_TARGET)
$(VENV)/.build-installed: requirements-build.txt | venv
	$(PIP) install --quiet --disable-pip-version-check -r requirements-build.txt
	touch $@

bench: venv sidecar
	cargo bench --bench core
	python3 scripts/bench-report.py | tee target/bench-core.md
	SIDECAR=target/sidecar-$(SIDECAR_TARGET) scripts/bench-e2e.sh

lock:
	rm -rf /tmp/logdrop-lock && python3 -m venv /tmp/logdrop-lock
	/tmp/logdrop-lock/bin/pip install --quiet -r requirements-dev.txt
	{ echo "# Every package of the dev venv, pinned (pip freeze); regenerate with \`make lock\`."; /tmp/logdrop-lock/bin/pip freeze; } > requirements-lock.txt

clean:
	cargo clean
	rm -rf $(VENV)
