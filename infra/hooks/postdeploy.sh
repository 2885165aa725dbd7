#!/bin/sh
# azd postdeploy hook (service `handler`): the two things the template cannot do reliably while
# it is deployed, done once the code is there, each tried a bounded number of times.
#
# 1. Key Vault references. App Service resolves them when the app's settings change and keeps
#    the result, a failed one too (the identity's role still propagating, say), until the next
#    change or an explicit refresh: a restart does not try again. If a reference of the app is
#    not Resolved, ask for a refresh and wait until every one is.
# 2. The host key `summary-womble-timer`, with the value GetHotTopics sends (SUMMARY_WOMBLE_KEY,
#    kept in the azd environment by preprovision.sh). ARM hands the request to the app's host
#    runtime, which refuses it while it starts or restarts; it is tried again until it succeeds.
#
# Needs the Azure CLI signed in to the subscription (az login). Run it again by hand with
# `azd hooks run postdeploy --service handler`. Why each step: docs/deploy.md.
set -eu

# Each step: at most this many tries, this many seconds apart (about two minutes).
attempts=12
delay=10
key_name=summary-womble-timer
api="api-version=2022-03-01"

fail() {
    echo "postdeploy: $*" >&2
    exit 1
}

for name in AZURE_SUBSCRIPTION_ID AZURE_RESOURCE_GROUP AZURE_FUNCTION_APP_NAME SUMMARY_WOMBLE_KEY; do
    eval "value=\${$name:-}"
    [ -n "$value" ] || fail "$name is not set in the azd environment: run azd provision first"
done
command -v az >/dev/null 2>&1 ||
    fail "the Azure CLI (az) is needed, signed in to the subscription (az login)"

site="/subscriptions/$AZURE_SUBSCRIPTION_ID/resourceGroups/$AZURE_RESOURCE_GROUP/providers/Microsoft.Web/sites/$AZURE_FUNCTION_APP_NAME"
references="$site/config/configreferences/appsettings"

# The Key Vault references that are not Resolved, one "<setting> <status>" a line; nothing
# when all are. Fails when they cannot be read.
unresolved_references() {
    listed=$(az rest --method get --url "$references?$api" \
        --query "value[?properties.status!='Resolved'].[id, properties.status]" --output tsv) ||
        return 1
    [ -z "$listed" ] ||
        printf '%s\n' "$listed" | awk -F '\t' '{ name = $1; sub(/.*\//, "", name); print name " " $2 }'
}

resolve_references() {
    try=1
    while :; do
        if pending=$(unresolved_references 2>&1); then
            if [ -z "$pending" ]; then
                echo "Key Vault references: all resolved"
                return 0
            fi
            echo "Key Vault references not resolved (try $try of $attempts):"
            echo "$pending" | sed 's/^/  /'
            # A refresh restarts the app: ask on the first try and every third after, not on
            # every look, so that a refresh has time to finish.
            if [ $((try % 3)) -eq 1 ]; then
                if out=$(az rest --method post --url "$references/refresh?$api" --output none 2>&1); then
                    echo "  asked App Service to resolve them again"
                else
                    echo "  the refresh was refused: $out"
                fi
            fi
        else
            echo "Key Vault references could not be read (try $try of $attempts): $pending"
        fi
        [ "$try" -lt "$attempts" ] || return 1
        try=$((try + 1))
        sleep "$delay"
    done
}

set_host_key() {
    try=1
    while :; do
        if out=$(az functionapp keys set --subscription "$AZURE_SUBSCRIPTION_ID" \
            --resource-group "$AZURE_RESOURCE_GROUP" --name "$AZURE_FUNCTION_APP_NAME" \
            --key-type functionKeys --key-name "$key_name" --key-value "$SUMMARY_WOMBLE_KEY" \
            --output none 2>&1); then
            echo "host key $key_name: set"
            return 0
        fi
        echo "host key $key_name not set (try $try of $attempts): $out"
        [ "$try" -lt "$attempts" ] || return 1
        try=$((try + 1))
        sleep "$delay"
    done
}

status=0
resolve_references || {
    status=1
    echo "postdeploy: Key Vault references still unresolved after $attempts tries; their status is" \
        "in the portal (the app's Environment variables). Once the cause is fixed:" \
        "azd hooks run postdeploy --service handler" >&2
}
set_host_key || {
    status=1
    echo "postdeploy: the host key $key_name could not be set after $attempts tries; GetHotTopics" \
        "gets 401 until it is: azd hooks run postdeploy --service handler" >&2
}
exit "$status"
