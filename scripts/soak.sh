#!/usr/bin/env bash
# soak.sh: the long runs of the reliability suite (issue #9), then one summary table.
#
#   KMSYNC_FAULT_EPISODES  randomized fault episodes            (default 1000)
#   KMSYNC_HA_KILLS        leader kills under load              (default 20)
#   KMSYNC_HA_SECRETS      ManagedSecrets syncing during them   (default 60)
#   FUZZ_SECONDS           seconds per fuzz target              (default 60)
#
# Every figure comes from the `SOAK <metric> <n>` lines the tests print (so the table can only
# show what really ran). The run fails when a step fails, a figure is missing, or invariant
# violations, duplicate writes, canary hits or fuzz crashes are not zero. Everything runs on
# loopback: a private etcd + kube-apiserver, PostgreSQL and the in-process KMS emulator.
set -uo pipefail
cd "$(dirname "$0")/.."

out="${SOAK_DIR:-target/soak}"
mkdir -p "$out"
log="$out/soak.log"
: >"$log"
export KMSYNC_FAULT_EPISODES="${KMSYNC_FAULT_EPISODES:-1000}"
export KMSYNC_HA_KILLS="${KMSYNC_HA_KILLS:-20}"
export KMSYNC_HA_SECRETS="${KMSYNC_HA_SECRETS:-60}"
export FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
started=$(date +%s)
failed=0

step() {
  local name="$1"; shift
  local began=$(date +%s)
  echo "== $name" | tee -a "$log"
  if "$@" >>"$log" 2>&1; then
    echo "   ok ($(( $(date +%s) - began ))s)"
  else
    echo "   FAILED ($(( $(date +%s) - began ))s), see $log"
    failed=1
  fi
}

step "fault episodes, crash matrix, HA, leak canaries, bad inputs (real apiserver)" \
  scripts/postgres.sh run scripts/controlplane.sh run \
  cargo test --features integration \
    --test k8s_faults --test k8s_rotation --test k8s_ha --test k8s_leaks --test k8s_bad_input \
    -- --nocapture
step "panic canaries and fuzz regressions" \
  cargo test --test leak_panics --test fuzz_regressions -- --nocapture
step "fuzzing (${FUZZ_SECONDS}s per target)" scripts/fuzz.sh

python3 - "$log" "$failed" "$(( $(date +%s) - started ))" <<'PY'
import sys
from collections import defaultdict

log, failed, seconds = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3])
figures = defaultdict(list)
for line in open(log, errors="replace"):
    parts = line.split()
    if len(parts) == 3 and parts[0] == "SOAK" and parts[2].lstrip("-").isdigit():
        figures[parts[1]].append(int(parts[2]))

def total(metric):
    return sum(figures[metric]) if metric in figures else None

failover = sorted(figures.get("failover_ms", []))
def percentile(p):
    return failover[min(len(failover) - 1, int(p * len(failover)))] if failover else None

must_be_zero = ["invariant_violations", "duplicate_writes", "canary_hits", "fuzz_crashes"]
rows = [
    ("fault episodes run", total("fault_episodes"), ""),
    ("invariant violations", total("invariant_violations"), "must be 0"),
    ("rotation crash points covered", total("crash_points"), "every driver point, per path"),
    ("leader failovers measured", len(failover) if failover else None, ""),
    ("failover time p50 (ms)", percentile(0.5), "SIGKILL to the survivor's first sync"),
    ("failover time max (ms)", failover[-1] if failover else None, ""),
    ("duplicate KMS writes", total("duplicate_writes"), "must be 0"),
    ("canary checks (canary x place)", total("canary_checks"), ""),
    ("canary hits", total("canary_hits"), "must be 0"),
    ("bad inputs rejected", total("bad_inputs_rejected"), "each with its exact message or reason"),
    ("fuzz executions", total("fuzz_execs"), ""),
    ("fuzz crashes", total("fuzz_crashes"), "must be 0"),
]
bad = failed
print()
print(f"kmsync soak summary ({seconds // 60} min {seconds % 60} s)")
print(f"| {'figure':<32} | {'value':>12} | note")
print(f"|{'-' * 34}|{'-' * 14}|------")
for name, value, note in rows:
    shown = "not measured" if value is None else f"{value:,}"
    print(f"| {name:<32} | {shown:>12} | {note}")
    if value is None:
        bad = True
for metric in must_be_zero:
    if (total(metric) or 0) != 0:
        bad = True
print()
print("soak FAILED" if bad else "soak passed")
sys.exit(1 if bad else 0)
PY
