# kmsync — the two commands a newcomer runs are `make demo` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
export KUBECTL ?= /usr/lib/google-cloud-sdk/bin/kubectl.1.33

.PHONY: test lint unit sdk integration controlplane controlplane-stop crds demo

## test: formatting, lints, unit tests, then integration tests against a real local control plane.
test: lint unit sdk integration

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets --all-features -- -D warnings

unit:
	$(CARGO) test

## sdk: the official Alibaba Python SDK (in .venv) against the emulator, all signature modes.
sdk:
	scripts/sdk-venv.sh
	$(CARGO) build --bin kmsync
	KMSYNC_BIN=$(TARGET_DIR)/debug/kmsync .venv/bin/python -m pytest tests/sdk -q

## controlplane: build etcd + kube-apiserver from the Go module proxy (cached under ~/.cache).
controlplane:
	scripts/controlplane.sh build

## integration: start the control plane, install the CRDs with kubectl, run the tests, stop it;
## then the demo end to end (it starts its own control plane).
integration: controlplane
	scripts/controlplane.sh run $(CARGO) test --features integration --test 'k8s_*'
	scripts/demo.sh > target/demo.log 2>&1 || { tail -n 60 target/demo.log; exit 1; }
	@echo "make demo: ran start to finish (log in target/demo.log)"

controlplane-stop:
	scripts/controlplane.sh stop

## crds: regenerate crds/ from the Rust types.
crds:
	$(CARGO) run -q -- crd > crds/kmsync.io.yaml

## demo: control plane + seeded KMS emulator + operator; shows a Secret following a KMS rotation.
demo:
	scripts/demo.sh
