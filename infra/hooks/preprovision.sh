#!/bin/sh
# azd preprovision hook: keeps the app's generated secrets in the azd environment, so that
# re-provisioning never changes them. The first provision of an environment generates each;
# every later one finds it there and passes the same value to the template
# (infra/main.parameters.json), which stores it in Key Vault:
#
# - SUMMARY_WOMBLE_KEY: the function key GetHotTopics sends (the host key summary-womble-timer);
# - CALLBACK_SIGNING_KEY: the Standard Webhooks secret (whsec_<base64 of 32 bytes>) that signs
#   completion callbacks; receivers verify with it.
#
# To keep a value made elsewhere (another machine, an earlier template), set it before
# provisioning: azd env set <NAME> <value>. See docs/deploy.md.
set -eu

# Prints 32 random bytes in the form $1 asks for: hex (64 digits) or base64 (one line).
random_32() {
    case "$1" in
    hex) od -An -N32 -tx1 /dev/urandom | tr -d ' \n' ;;
    base64) head -c 32 /dev/urandom | base64 | tr -d '\n' ;;
    esac
}

# keep NAME VALUE-PREFIX FORM EXPECTED-LENGTH: generates NAME unless the environment has it.
keep() {
    name=$1 prefix=$2 form=$3 length=$4
    eval "current=\${$name:-}"
    if [ -n "$current" ]; then
        echo "$name: kept from the azd environment"
        return
    fi
    value="$prefix$(random_32 "$form")"
    if [ "${#value}" -ne "$length" ]; then
        echo "could not read 32 random bytes from /dev/urandom for $name" >&2
        exit 1
    fi
    # The environment being provisioned, which need not be the default one (azd provision -e).
    if [ -n "${AZURE_ENV_NAME:-}" ]; then
        azd env set --environment "$AZURE_ENV_NAME" "$name" "$value"
    else
        azd env set "$name" "$value"
    fi
    echo "$name: generated and kept in the azd environment"
}

# Hex: safe in a header, a query string and a Key Vault secret.
keep SUMMARY_WOMBLE_KEY "" hex 64
# whsec_ and 44 base64 characters (32 bytes), as Standard Webhooks libraries expect.
keep CALLBACK_SIGNING_KEY whsec_ base64 50
