#!/usr/bin/env bash
# Everything `make test` runs, once Azurite is up (see scripts/with-azurite.sh): the Rust test
# suites (unit, store contract, black-box) and a bounded schema-driven fuzzing run. Both run
# even when the first fails; the exit code says whether all passed.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
status=0
cargo test --locked --no-fail-fast -- --color never || status=1
scripts/fuzz-api.sh "${FUZZ_EXAMPLES:-25}" || status=1
exit "$status"
