#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for FUZZ_SECONDS (default 60) each, starting from the
# committed seeds in fuzz/seeds/<target>/ (copied into a scratch corpus; the seeds never grow),
# and prints `SOAK fuzz_execs <n>` per target and `SOAK fuzz_crashes <n>` for `make soak`.
# Exits non-zero on a crash, naming the artifact and the command that reproduces it.
#
#   scripts/fuzz.sh                  every target, 60 s each
#   scripts/fuzz.sh signature        one target
#   FUZZ_SECONDS=600 scripts/fuzz.sh
#   scripts/fuzz.sh --build-only     build the targets, run nothing
#
# cargo-fuzz is installed on first use from crates.io into ~/.cache/kmsync-tools/cargo-fuzz/<ver>.
# libFuzzer needs a nightly compiler (`cargo +nightly`); without one, stable with
# RUSTC_BOOTSTRAP=1 is used when it can build a fuzz target. The build goes under
# $CARGO_TARGET_DIR/fuzz (else fuzz/target); scratch corpora under fuzz/corpus/, crashes under
# fuzz/artifacts/ (all ignored by git).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
FUZZ_DIR="$ROOT/fuzz"
CARGO_FUZZ_VERSION="0.13.2"
TOOLS="$HOME/.cache/kmsync-tools/cargo-fuzz/$CARGO_FUZZ_VERSION"
FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
# Many codegen units build far faster on two cores; the fuzzing speed lost is small.
FUZZ_CODEGEN_UNITS="${FUZZ_CODEGEN_UNITS:-16}"
FUZZ_SANITIZER="${FUZZ_SANITIZER:-address}"
if [[ -n "${CARGO_TARGET_DIR:-}" ]]; then
  FUZZ_TARGET_DIR="$CARGO_TARGET_DIR/fuzz"
else
  FUZZ_TARGET_DIR="$FUZZ_DIR/target"
fi

log() { echo "fuzz: $*" >&2; }

install_cargo_fuzz() {
  if [[ -x "$TOOLS/bin/cargo-fuzz" ]]; then
    return
  fi
  log "installing cargo-fuzz $CARGO_FUZZ_VERSION into $TOOLS"
  local build="$FUZZ_TARGET_DIR/cargo-fuzz-install"
  cargo install --locked --quiet --root "$TOOLS" --target-dir "$build" \
    --version "$CARGO_FUZZ_VERSION" cargo-fuzz
  rm -rf "$build"
}

# Sets CARGO_CMD to a cargo that can build libFuzzer targets.
pick_toolchain() {
  if command -v rustup >/dev/null && rustup run nightly rustc --version >/dev/null 2>&1; then
    CARGO_CMD=(cargo +nightly)
    log "toolchain: $(rustup run nightly rustc --version)"
    return
  fi
  log "no nightly toolchain (rustup toolchain install nightly); trying stable with RUSTC_BOOTSTRAP=1"
  export RUSTC_BOOTSTRAP=1
  CARGO_CMD=(cargo)
}

build() {
  log "building fuzz targets (sanitizer $FUZZ_SANITIZER) into $FUZZ_TARGET_DIR"
  local start=$SECONDS
  if ! (cd "$FUZZ_DIR" && "${CARGO_CMD[@]}" fuzz build --sanitizer "$FUZZ_SANITIZER" \
      --codegen-units "$FUZZ_CODEGEN_UNITS" --target-dir "$FUZZ_TARGET_DIR"); then
    if [[ -n "${RUSTC_BOOTSTRAP:-}" ]]; then
      log "error: stable with RUSTC_BOOTSTRAP=1 cannot build the fuzz targets either;" \
        "install nightly: rustup toolchain install nightly"
    fi
    exit 1
  fi
  log "build took $((SECONDS - start)) s"
}

# Runs one target; prints its SOAK lines; returns 1 on a crash.
run_target() {
  local target="$1"
  local corpus="$FUZZ_DIR/corpus/$target"
  local artifacts="$FUZZ_DIR/artifacts/$target"
  local out
  out="$(mktemp)"
  mkdir -p "$corpus" "$artifacts"
  cp -n "$FUZZ_DIR/seeds/$target"/* "$corpus"/ 2>/dev/null || true
  log "running $target for ${FUZZ_SECONDS}s"
  local status=0
  (cd "$FUZZ_DIR" && "${CARGO_CMD[@]}" fuzz run --sanitizer "$FUZZ_SANITIZER" \
      --codegen-units "$FUZZ_CODEGEN_UNITS" --target-dir "$FUZZ_TARGET_DIR" "$target" "$corpus" -- \
      -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 -timeout=30 -rss_limit_mb=2048 \
      -max_len=4096 -artifact_prefix="$artifacts/") >"$out" 2>&1 || status=$?
  local execs
  execs="$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$out" | grep -Eo '[0-9]+$' | tail -n 1)"
  echo "SOAK fuzz_execs ${execs:-0}"
  local crash
  crash="$(grep -Eo 'Test unit written to [^ ]+' "$out" | awk '{print $NF}' | tail -n 1)"
  if [[ $status -ne 0 || -n "$crash" ]]; then
    tail -n 60 "$out" >&2
    log "CRASH in $target (exit $status)"
    if [[ -n "$crash" ]]; then
      log "artifact: $crash"
      log "reproduce: (cd fuzz && cargo +nightly fuzz run $target $crash)"
      log "then copy it to fuzz/regressions/$target/ and assert its behaviour in tests/fuzz_regressions.rs"
    fi
    rm -f "$out"
    return 1
  fi
  rm -f "$out"
  log "$target: ${execs:-0} executions, no crash"
}

main() {
  local build_only=0
  local targets=()
  for arg in "$@"; do
    case "$arg" in
      --build-only) build_only=1 ;;
      *) targets+=("$arg") ;;
    esac
  done
  if [[ ${#targets[@]} -eq 0 ]]; then
    mapfile -t targets < <(ls "$FUZZ_DIR/fuzz_targets" | sed -n 's/\.rs$//p' | sort)
  fi
  pick_toolchain
  install_cargo_fuzz
  export PATH="$TOOLS/bin:$PATH"
  build
  if [[ $build_only -eq 1 ]]; then
    return
  fi
  local crashes=0
  for target in "${targets[@]}"; do
    run_target "$target" || crashes=$((crashes + 1))
  done
  echo "SOAK fuzz_crashes $crashes"
  if [[ $crashes -ne 0 ]]; then
    log "$crashes target(s) crashed"
    exit 1
  fi
}

main "$@"
