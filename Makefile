# logdrop: `make demo` and `make test` do all the set-up on a fresh machine.
SHELL := /bin/bash
VENV := .venv
PIP := $(VENV)/bin/pip
EVENT ?= events/s3-put.json

SIDECAR_TARGET ?= x86_64-unknown-linux-musl
ARCH := $(firstword $(subst -, ,$(SIDECAR_TARGET)))
IMAGE ?= logdrop-sidecar:latest
# Debian 12's podman and runc build and run the FROM-scratch sidecar image
# without a Docker daemon (the image test needs them).
PODMAN_VERSION := 4.3.1+ds1-8+deb12u1+b3
RUNC_VERSION := 1.1.5+ds1-1+deb12u1
# Debian 12's Tomcat 10 (its jars, run from a test's own CATALINA_BASE) for the
# real-Tomcat test (tests/it/tomcat.rs); Java comes with it as a dependency.
TOMCAT_VERSION := 10.1.60-1~deb12u1
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
SAM := SAM_CLI_TELEMETRY=0 PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/sam
TEMPLATES := template.yaml examples/ecs-task.yaml examples/ecs-task-efs.yaml

.PHONY: all venv node podman tomcat test lint demo invoke invoke-aws build sidecar image deploy bench bench-cost lock clean

all: test

# Python tools (moto's server, cfn-lint, SAM CLI), pinned, in a project-local venv.
venv: $(VENV)/.installed
$(VENV)/.installed: requirements-dev.txt requirements-lock.txt
	python3 -m venv $(VENV)
	$(PIP) install --quiet --disable-pip-version-check -r requirements-dev.txt -c requirements-lock.txt
	touch $@

# Node tools (@cloud-copilot/iam-simulate, the IAM policy evaluator of
# scripts/check-permissions.py), exactly as package-lock.json pins them.
node: node_modules/.installed
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Installs podman and runc from Debian when either is missing; quiet otherwise.
podman:
	@command -v podman >/dev/null && command -v runc >/dev/null || { \
	  echo "installing podman $(PODMAN_VERSION) and runc $(RUNC_VERSION) (Debian)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
	    podman=$(PODMAN_VERSION) runc=$(RUNC_VERSION) >/dev/null; }

# Installs Tomcat 10 from Debian when its jars are missing; quiet otherwise.
tomcat:
	@test -f /usr/share/tomcat10/bin/bootstrap.jar && command -v java >/dev/null || { \
	  echo "installing tomcat10 $(TOMCAT_VERSION) (Debian)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
	    tomcat10=$(TOMCAT_VERSION) tomcat10-common=$(TOMCAT_VERSION) \
	    libtomcat10-java=$(TOMCAT_VERSION) >/dev/null; }

# cfn-lint and `sam validate --lint` on every template, then logdrop's own
# checks (scripts/check-template.py: scoped IAM, TLS-only bucket, lifecycle,
# stop timeout), which also validate the JSON task definition.
lint: venv
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	$(VENV)/bin/cfn-lint $(TEMPLATES)
	$(SAM) validate --lint --template template.yaml --region us-east-1
	$(VENV)/bin/python scripts/check-template.py $(TEMPLATES) examples/ecs-task-definition.json

# The image test (tests/it/image.rs) builds the image from the static sidecar;
# the deploy test (tests/it/deploy.rs) creates the stacks in moto and
# evaluates the binaries' requests against the template's policies (node);
# the Tomcat test (tests/it/tomcat.rs) runs Debian's tomcat10.
test: lint node podman tomcat sidecar
	cargo test --tests

demo: venv
	cargo build --release --bins
	scripts/with-moto.sh scripts/demo.sh

# Runs the handler once on EVENT against a local emulator, with the sample
# objects of events/objects uploaded and the variables set; prints the
# response and what the log group then holds.
invoke: venv
	cargo build --release --bin shipper
	scripts/with-moto.sh scripts/invoke-local.sh $(EVENT)

# The same against the AWS account the environment names (AWS_PROFILE or
# credentials, AWS_REGION); the event must name your bucket and a chunk in it.
invoke-aws:
	@test -n "$$LOGDROP_LOG_GROUP" || { echo "set LOGDROP_LOG_GROUP to the stack's file log group" >&2; exit 2; }
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

# The sidecar image (Dockerfile): docker if its daemon answers, else podman.
image: sidecar
	@docker info >/dev/null 2>&1 || $(MAKE) --no-print-directory podman
	ARCH=$(ARCH) scripts/build-image.sh $(IMAGE)

# `sam build` (cargo-lambda, no Docker), then `sam deploy --guided` the first
# time (it writes samconfig.toml) and `sam deploy` with it after.
deploy: $(VENV)/.build-installed
	rustup target add aarch64-unknown-linux-gnu
	$(SAM) build
	if [ -f samconfig.toml ]; then $(SAM) deploy; else $(SAM) deploy --guided; fi

bench: venv sidecar bench-cost
	cargo bench --bench core
	python3 scripts/bench-report.py | tee target/bench-core.md
	SIDECAR=target/sidecar-$(SIDECAR_TARGET) scripts/bench-e2e.sh
	scripts/with-moto.sh $(VENV)/bin/python scripts/bench-efs-lag.py

# Requests counted by kind and priced per task-month, with p50/p99 lag (issue 9).
bench-cost: venv
	scripts/bench-cost.sh

lock:
	rm -rf /tmp/logdrop-lock && python3 -m venv /tmp/logdrop-lock
	/tmp/logdrop-lock/bin/pip install --quiet -r requirements-dev.txt
	{ echo "# Every package of the dev venv, pinned (pip freeze); regenerate with \`make lock\`."; /tmp/logdrop-lock/bin/pip freeze; } > requirements-lock.txt

clean:
	cargo clean
	rm -rf $(VENV) .aws-sam node_modules
