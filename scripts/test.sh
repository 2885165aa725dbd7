#!/usr/bin/env bash
# Everything `make test` runs, once Azurite is up (see scripts/with-azurite.sh): the Rust test
# suites (unit, store contract, black-box; the black-box job suites twice, once per job dispatch)
# and a bounded schema-driven fuzzing run. The two run
# side by side (they share only Azurite, where each uses containers of its own), and both run
# to the end even when one fails; the last line sums up, and the exit code says whether all
# passed.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
log="$(mktemp)"
fuzz_log="$(mktemp)"
trap 'rm -f "$log" "$fuzz_log"' EXIT

# The Python tools, before anything that uses them starts: the fuzzing run, and the callback
# tests' Standard Webhooks verifier. A failure here shows again as those tests' failures.
scripts/tools-venv.sh

# The fuzzing run counts as one test; its output is shown when it is over.
scripts/fuzz-api.sh "${FUZZ_EXAMPLES:-25}" >"$fuzz_log" 2>&1 &
fuzz=$!

# Most tests wait (on a handler process, Azurite, a held fake) far more than they compute, so
# more of them run at once than the machine has cores.
status=0
cargo_status=0
cargo test --locked --no-fail-fast -- --color never --test-threads "${TEST_THREADS:-8}" 2>&1 | tee "$log" || cargo_status=1
# The black-box suites of the job API, durability, the hand-off and the timer once more, with
# queue dispatch: every app they start then runs its jobs from a Storage queue of its own
# (testkit::Dispatch).
echo "== again with JOB_DISPATCH=queue: api::, durability::, handoff::, timer::"
TEST_JOB_DISPATCH=queue cargo test --locked --no-fail-fast --test integration -- --color never \
    --test-threads "${TEST_THREADS:-8}" api:: durability:: handoff:: timer:: 2>&1 | tee -a "$log" || cargo_status=1
# "test result: ok. 84 passed; 0 failed; 1 ignored; ..." lines, added up.
count() { awk -v field="$1" '/^test result:/ { for (i = 1; i <= NF; i++) if ($(i + 1) ~ "^" field) n += $i } END { print n + 0 }' "$log"; }
passed=$(count passed)
failed=$(count failed)
ignored=$(count ignored)
# A suite that did not build ran no test, and counts as a failure.
if [[ "$cargo_status" -ne 0 ]]; then
    status=1
    [[ "$failed" -gt 0 ]] || failed=1
fi

if wait "$fuzz"; then
    fuzz_status=0
else
    fuzz_status=1
fi
cat "$fuzz_log"
if [[ "$fuzz_status" -eq 0 ]]; then
    passed=$((passed + 1))
else
    failed=$((failed + 1))
    status=1
fi
[[ "$failed" -eq 0 ]] || status=1
echo
echo "summary: ${passed:-0} passed, ${failed:-0} failed, ${ignored:-0} skipped"
exit "$status"
