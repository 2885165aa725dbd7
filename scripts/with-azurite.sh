#!/usr/bin/env bash
# Runs a command with Azurite started for it, and stops Azurite afterwards whatever happens.
#
#   scripts/with-azurite.sh <state-dir> <command> [args...]
#
# The command sees AZURITE_BLOB_PORT, AZURITE_QUEUE_PORT and AZURITE_CONNECTION_STRING; its exit
# code is ours.
set -euo pipefail

[[ $# -ge 2 ]] || { echo "usage: $0 <state-dir> <command> [args...]" >&2; exit 2; }
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
state_dir="$1"
shift

# A previous run that was killed may have left its Azurite behind.
"$here/azurite.sh" stop "$state_dir"
rm -rf "$state_dir/data"
trap '"$here/azurite.sh" stop "$state_dir"' EXIT
"$here/azurite.sh" start "$state_dir"
# shellcheck disable=SC1091
source "$state_dir/env"
"$@"
