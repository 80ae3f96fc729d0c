#!/usr/bin/env bash
# Run the cargo-fuzz targets in fuzz/ for FUZZ_SECONDS seconds each (default 600).
#
#   scripts/fuzz.sh                  # all targets
#   scripts/fuzz.sh params digitmap  # some targets
#
# Environment:
#   FUZZ_SECONDS    time per target, seconds (default 600)
#   FUZZ_TOOLCHAIN  a rustup toolchain to use (e.g. nightly); by default the active
#                   (stable) toolchain with RUSTC_BOOTSTRAP=1, which cargo-fuzz needs for
#                   -Zsanitizer on stable
#   FUZZ_SANITIZER  address (default) or none
#   FUZZ_JOBS       libFuzzer -fork workers (default: none, one process)
#   FUZZ_KEEP_GOING 1: with FUZZ_JOBS, go on after a crash (-ignore_crashes=1) to collect
#                   several distinct crashes in one run
#
# Exits non-zero if a target fails to build or finds a crash; crashing inputs are left in
# fuzz/artifacts/<target>/.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds="${FUZZ_SECONDS:-600}"
sanitizer="${FUZZ_SANITIZER:-address}"
all_targets=(mgcp_message params digitmap)
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=("${all_targets[@]}")
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

cargo_fuzz=(cargo)
if [ -n "${FUZZ_TOOLCHAIN:-}" ]; then
    cargo_fuzz+=("+${FUZZ_TOOLCHAIN}")
else
    export RUSTC_BOOTSTRAP=1
fi
cargo_fuzz+=(fuzz)

cd "$root/fuzz"
extra=()
if [ -n "${FUZZ_JOBS:-}" ]; then
    extra+=("-fork=${FUZZ_JOBS}")
    if [ "${FUZZ_KEEP_GOING:-0}" = 1 ]; then
        extra+=("-ignore_crashes=1")
    fi
fi

status=0
summary=()
for t in "${targets[@]}"; do
    log="$(mktemp "${TMPDIR:-/tmp}/fuzz-$t.XXXXXX.log")"
    echo "== $t: ${seconds}s (sanitizer: $sanitizer, log: $log)"
    mkdir -p "corpus/$t"
    set +e
    "${cargo_fuzz[@]}" run --sanitizer "$sanitizer" "$t" "corpus/$t" -- \
        -max_total_time="$seconds" -print_final_stats=1 "${extra[@]}" 2>&1 | tee "$log" \
        | grep -E '^(Done|==[0-9]+==|INFO: Running|thread .* panicked|SUMMARY|artifact_prefix|Test unit written)'
    rc=${PIPESTATUS[0]}
    set -e
    runs="$(grep -Eo '^Done [0-9]+ runs' "$log" | grep -Eo '[0-9]+' | tail -1 || true)"
    if [ -z "$runs" ]; then
        runs="$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' | tail -1 || true)"
    fi
    if [ -z "$runs" ]; then # -fork mode reports "#<runs>: cov: ..."
        runs="$(grep -Eo '^#[0-9]+: cov' "$log" | grep -Eo '[0-9]+' | tail -1 || true)"
    fi
    if [ "$rc" -eq 0 ]; then
        summary+=("$t: ok, ${runs:-?} executions in ${seconds}s")
    else
        status=1
        crash="$(grep -Eo 'Test unit written to [^ ]+' "$log" | awk '{print $NF}' | tail -1 || true)"
        summary+=("$t: FAILED (exit $rc) after ${runs:-?} executions; input: ${crash:-see $log}")
    fi
done

echo "== summary"
printf '%s\n' "${summary[@]}"
exit "$status"
