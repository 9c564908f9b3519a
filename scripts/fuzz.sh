#!/usr/bin/env bash
# Builds the fuzzers (fuzz/, libFuzzer, coverage-guided, on the stable toolchain) and runs
# each for a bounded time from its seeds, keeping what it learns in a corpus outside the
# repository. A crash fails the run and leaves its input under $FUZZ_DIR/artifacts.
#
#   scripts/fuzz.sh                 # every target for 8 s (what `make test` runs)
#   scripts/fuzz.sh 600             # every target for 10 minutes
#   scripts/fuzz.sh 600 jwt_tokens  # one target
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH="${1:-8}"
shift || true
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
  TARGETS=(jsonrpc_message transport_request sealed_ids sse_events yaml_sources snapshot_decode jwt_tokens websocket_frames openapi_documents)
fi
TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/switchboard-fuzz-target}"
FUZZ_DIR="${FUZZ_DIR:-$HOME/.cache/switchboard-fuzz}"
# libFuzzer's coverage instrumentation; with --target, build scripts are left alone.
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing"
cargo build --release --locked --manifest-path fuzz/Cargo.toml --target "$TRIPLE" --bins
BIN="$CARGO_TARGET_DIR/$TRIPLE/release"
mkdir -p "$FUZZ_DIR/artifacts"
for t in "${TARGETS[@]}"; do
  corpus="$FUZZ_DIR/corpus/$t"
  mkdir -p "$corpus"
  seeds=()
  [ -d "fuzz/seeds/$t" ] && seeds=("fuzz/seeds/$t")
  log="$FUZZ_DIR/$t.log"
  if ! "$BIN/$t" "$corpus" "${seeds[@]}" -max_total_time="$SECONDS_EACH" -max_len=65536 \
      -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$FUZZ_DIR/artifacts/$t-" \
      -print_final_stats=1 >"$log" 2>&1; then
    echo "fuzz: $t FAILED; its input is in $FUZZ_DIR/artifacts:" >&2
    tail -40 "$log" >&2
    exit 1
  fi
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  echo "fuzz: $t: ${runs:-?} inputs in ${SECONDS_EACH}s, no crash (corpus: $(ls "$corpus" | wc -l) inputs)"
done
