#!/bin/sh
# azd preprovision hook: keeps the function key GetHotTopics sends (SUMMARY_WOMBLE_KEY) in the
# azd environment. The first provision of an environment generates it; every later one finds
# it there and passes the same value to the template (infra/main.parameters.json), so
# re-provisioning never changes the key callers hold or the Key Vault secret the timer reads.
#
# To keep a key made elsewhere (another machine, an earlier template), set it before
# provisioning: azd env set SUMMARY_WOMBLE_KEY <value>. See docs/deploy.md.
set -eu

if [ -n "${SUMMARY_WOMBLE_KEY:-}" ]; then
    echo "SUMMARY_WOMBLE_KEY: kept from the azd environment"
    exit 0
fi

# 32 random bytes as 64 hex digits: safe in a header, a query string and a Key Vault secret.
key=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
if [ "${#key}" -ne 64 ]; then
    echo "could not read 32 random bytes from /dev/urandom" >&2
    exit 1
fi

# The environment being provisioned, which need not be the default one (azd provision -e).
if [ -n "${AZURE_ENV_NAME:-}" ]; then
    azd env set --environment "$AZURE_ENV_NAME" SUMMARY_WOMBLE_KEY "$key"
else
    azd env set SUMMARY_WOMBLE_KEY "$key"
fi
echo "SUMMARY_WOMBLE_KEY: generated and kept in the azd environment"
