#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/fuzz_targets/) for a bounded time each:
#   scripts/fuzz.sh [seconds-per-target] [target...]
# Default: 60 s for each of task_list, checkpoint, log_config, flags. Not part of CI's tests.
#
# Only stable Rust is installed: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its nightly-only flags
# (-Zsanitizer=address and friends). The corpus grows in fuzz/corpus/<target> (not committed);
# the committed seeds in fuzz/seeds/<target> and dictionaries in fuzz/dicts/ are read as well.
# A crash leaves its input in fuzz/artifacts/<target>/; reproduce it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run <target> fuzz/artifacts/<target>/crash-...
set -euo pipefail

secs="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(task_list checkpoint log_config flags)
fi
cd "$(dirname "$0")/.."

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1

failed=()
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t"
    echo "fuzz.sh: $t for ${secs}s"
    log="fuzz/corpus/$t.log"
    if cargo fuzz run "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
        -max_total_time="$secs" -timeout=10 -dict="fuzz/dicts/$t.dict" -print_final_stats=1 \
        2>&1 | tee "$log" | grep -E '^(#[0-9]+\s+(DONE|INITED)|==[0-9]+==|stat::number_of_executed_units|.*panicked)'; then
        :
    fi
    if grep -qE 'panicked|ERROR: libFuzzer|SUMMARY: AddressSanitizer|Test unit written' "$log"; then
        failed+=("$t")
    fi
done
if [ ${#failed[@]} -ne 0 ]; then
    echo "fuzz.sh: FAILED: ${failed[*]} (inputs in fuzz/artifacts/)"
    exit 1
fi
echo "fuzz.sh: no crash in ${targets[*]}"
