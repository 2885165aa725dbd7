#!/usr/bin/env bash
# Schema-driven fuzzing of the SummaryWomble API with schemathesis, from openapi.yaml.
#
#   scripts/fuzz-api.sh <max-examples-per-operation>
#
# Runs under scripts/with-azurite.sh (needs AZURITE_CONNECTION_STRING). Installs the pinned
# schemathesis into .tools/venv on first use (scripts/tools-venv.sh), starts the built debug
# handler in standalone mode on a free port against a fresh container, and fails on any 5xx, any answer that breaks the
# spec, or a crash. Reddit points at a closed port: jobs fail, the API must not.
set -euo pipefail

examples="${1:-25}"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.tools/venv"
: "${AZURITE_CONNECTION_STRING:?run this under scripts/with-azurite.sh}"

"$repo/scripts/tools-venv.sh"

log="$(mktemp)"
handler=
trap 'if [[ -n "$handler" ]]; then kill -KILL "$handler" 2>/dev/null || true; fi; rm -f "$log"' EXIT

# Starts the handler on a port the OS just handed out and waits until it answers. Another
# process may take that port before the handler binds it: the start then fails with "already
# in use" and is tried again on a new port.
start_handler() {
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
    (
        cd "$repo"
        exec env -i PATH="$PATH" HOME="${HOME:-/root}" RUST_LOG=warn \
            PORT="$port" \
            AzureWebJobsStorage="$AZURITE_CONNECTION_STRING" \
            OUTPUT_CONTAINER="fuzz-$(date +%s)-$$" \
            REDDIT_AUTH_URL=http://127.0.0.1:1 REDDIT_API_URL=http://127.0.0.1:1 REDDIT_PUBLIC_URL=http://127.0.0.1:1 \
            target/debug/handler
    ) >"$log" 2>&1 &
    handler=$!
    disown "$handler"
    for _ in $(seq 1 300); do
        # An answer counts only while our handler runs: one that exited lost its port to
        # whoever answered.
        if curl -fsS "http://127.0.0.1:$port/" >/dev/null 2>&1 && kill -0 "$handler" 2>/dev/null; then
            return 0
        fi
        kill -0 "$handler" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

started=
for _ in 1 2 3 4 5; do
    if start_handler; then
        started=1
        break
    fi
    kill -KILL "$handler" 2>/dev/null || true
    grep -q "already in use" "$log" || break
done
if [[ -z "$started" ]]; then
    echo "fuzz-api.sh: the handler did not start:" >&2
    cat "$log" >&2
    exit 1
fi

status=0
"$venv/bin/schemathesis" run "$repo/openapi.yaml" \
    --url "http://127.0.0.1:$port" \
    --max-examples "$examples" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,negative_data_rejection \
    --phases examples,coverage,fuzzing \
    --request-timeout 30 \
    --seed 20261128 \
    --generation-database none \
    --no-color || status=$?

if ! kill -0 "$handler" 2>/dev/null; then
    echo "fuzz-api.sh: the handler crashed during fuzzing:" >&2
    cat "$log" >&2
    exit 1
fi
exit "$status"
