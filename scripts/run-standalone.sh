#!/usr/bin/env bash
# Runs the handler in standalone mode against the Azurite that with-azurite.sh started, and
# prints how to call it.
set -euo pipefail
port="${1:-7071}"
export PORT="$port"
export AzureWebJobsStorage="$AZURITE_CONNECTION_STRING"
export RUST_LOG="${RUST_LOG:-info}"
cat <<EOF2
SummaryWomble is starting on http://localhost:$port (storage: Azurite on 127.0.0.1:$AZURITE_BLOB_PORT).
Try:
  curl -s -X POST http://localhost:$port/api/SummaryWomble \\
       -H 'Content-Type: application/json' -d '{"topics": ["technology"], "limit": 2}'
  curl -s 'http://localhost:$port/api/SummaryWomble?job_id=<job_id from the ticket>'
The job dashboard: http://localhost:$port/api/dashboard (with FUNCTION_KEYS set: add #key=<key>, or type the key into its form)
Stop with Ctrl-C.
EOF2
exec target/debug/handler
