#!/usr/bin/env bash
# Starts and stops the Azurite blob and queue emulators for local runs and tests.
#
#   scripts/azurite.sh start <state-dir>   install (npm ci) if needed, start the blob and the
#                                          queue service, each on a free loopback port, wait
#                                          until both answer, write <state-dir>/env
#   scripts/azurite.sh stop <state-dir>    stop both; stopping a stopped emulator is fine
#
# <state-dir>/env exports AZURITE_BLOB_PORT, AZURITE_QUEUE_PORT and AZURITE_CONNECTION_STRING
# (with both BlobEndpoint and QueueEndpoint), so a caller can `source` it. Azurite serves two
# accounts: the well-known development account, which that connection string names, and a
# second one (AZURITE_SECOND_CONNECTION_STRING) for tests of an app whose output account is not
# its host storage account. The ports are chosen
# at start so that parallel runs never collide on 10000 and 10001; set AZURITE_BLOB_PORT and
# AZURITE_QUEUE_PORT to insist on them (10000 and 10001 are what `UseDevelopmentStorage=true`
# expects).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Both programs come with the one pinned npm package `azurite`.
bin_dir="$repo_root/node_modules/.bin"
services=(blob queue)

# The well-known development account of Azurite and the storage emulator; it is public.
account=devstoreaccount1
account_key='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='

# The second account (AZURITE_ACCOUNTS replaces the default list, so both are named there).
second_account=womblehost
second_account_key='c2Vjb25kLWFjY291bnQta2V5LWZvci1sb2NhbC10ZXN0cy1vbmx5LW5vdC1hLXNlY3JldA=='

start_timeout_seconds=30

die() {
    echo "azurite.sh: $*" >&2
    exit 1
}

usage() {
    echo "usage: $0 start|stop <state-dir>" >&2
    exit 2
}

# The emulator program of one service (blob or queue).
service_bin() {
    echo "$bin_dir/azurite-$1"
}

# The variable that pins a service's port.
port_variable() {
    case "$1" in
    blob) echo AZURITE_BLOB_PORT ;;
    queue) echo AZURITE_QUEUE_PORT ;;
    esac
}

# What one service's emulator keeps under <state-dir>: its pid, its log, the port it answers on.
pid_file() { echo "$1/azurite-$2.pid"; }
log_file() { echo "$1/azurite-$2.log"; }
port_file() { echo "$1/azurite-$2.port"; }

# Installs the pinned Azurite from package.json / package-lock.json when it is missing.
install_azurite() {
    if [[ -x "$(service_bin blob)" && -x "$(service_bin queue)" ]]; then
        return
    fi
    command -v npm >/dev/null || die "npm is required to install Azurite (install Node.js 20)"
    echo "azurite.sh: installing Azurite with npm" >&2
    (
        cd "$repo_root"
        if [[ -f package-lock.json ]]; then
            npm ci --no-audit --no-fund >&2
        else
            # Writes package-lock.json, which should then be committed.
            npm install --no-audit --no-fund >&2
        fi
    )
    local service
    for service in "${services[@]}"; do
        [[ -x "$(service_bin "$service")" ]] ||
            die "npm finished but $(service_bin "$service") is still missing"
    done
}

# Prints a TCP port that is free on 127.0.0.1 right now (the OS picks it).
free_port() {
    if command -v python3 >/dev/null; then
        python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
    else
        node -e 'const s = require("net").createServer();
s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });'
    fi
}

# Succeeds when something accepts TCP connections on 127.0.0.1:<port>.
port_answers() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Succeeds when Azurite itself answers HTTP on 127.0.0.1:<port> (its `Server` header says so,
# `Azurite-Blob/...` or `Azurite-Queue/...`): while a new Azurite is still starting, another
# process may already hold the port it was given.
azurite_answers() {
    local reply
    reply="$( (exec 3<>"/dev/tcp/127.0.0.1/$1" &&
        printf 'GET /devstoreaccount1?comp=list HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3 &&
        timeout 2 cat <&3) 2>/dev/null)" || true
    grep -qi '^server: azurite' <<<"$reply"
}

# Succeeds when the emulator of service $2 runs (per its pid file under $1).
service_running() {
    local pid_file
    pid_file="$(pid_file "$1" "$2")"
    [[ -f "$pid_file" ]] && kill -0 "$(cat "$pid_file")" 2>/dev/null
}

is_running() {
    local service
    for service in "${services[@]}"; do
        service_running "$1" "$service" || return 1
    done
}

start() {
    local state_dir="$1"
    mkdir -p "$state_dir/data"
    state_dir="$(cd "$state_dir" && pwd)"

    if is_running "$state_dir"; then
        [[ -f "$state_dir/env" ]] || die "Azurite runs but $state_dir/env is missing"
        echo "azurite.sh: already running (pids $(cat "$(pid_file "$state_dir" blob)") and $(cat "$(pid_file "$state_dir" queue)"))" >&2
        return
    fi
    # What is left of a start that got half way (or of one service that died): start afresh.
    stop "$state_dir"

    install_azurite

    local service
    for service in "${services[@]}"; do
        start_service "$state_dir" "$service"
    done
    local blob_port queue_port
    blob_port="$(cat "$(port_file "$state_dir" blob)")"
    queue_port="$(cat "$(port_file "$state_dir" queue)")"

    cat >"$state_dir/env" <<EOF
export AZURITE_BLOB_PORT=$blob_port
export AZURITE_QUEUE_PORT=$queue_port
export AZURITE_CONNECTION_STRING='DefaultEndpointsProtocol=http;AccountName=$account;AccountKey=$account_key;BlobEndpoint=http://127.0.0.1:$blob_port/$account;QueueEndpoint=http://127.0.0.1:$queue_port/$account;'
export AZURITE_SECOND_CONNECTION_STRING='DefaultEndpointsProtocol=http;AccountName=$second_account;AccountKey=$second_account_key;BlobEndpoint=http://127.0.0.1:$blob_port/$second_account;QueueEndpoint=http://127.0.0.1:$queue_port/$second_account;'
EOF
    echo "azurite.sh: Azurite blob service on 127.0.0.1:$blob_port, queue service on 127.0.0.1:$queue_port; source $state_dir/env" >&2
}

# Starts the emulator of one service on the port its variable pins, else on a free one.
start_service() {
    local state_dir="$1" service="$2"
    local variable port
    variable="$(port_variable "$service")"
    port="${!variable:-}"
    if [[ -n "$port" ]]; then
        if ! [[ "$port" =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then
            stop "$state_dir"
            die "$variable=$port is not a TCP port"
        elif port_answers "$port"; then
            stop "$state_dir"
            die "port $port ($variable) is already in use on 127.0.0.1; stop what listens there or unset $variable"
        fi
        launch "$state_dir" "$service" "$port" || {
            stop "$state_dir"
            exit 1
        }
        return
    fi
    # A port the OS just handed out can be taken by another process before Azurite binds it;
    # Azurite then exits with EADDRINUSE, and starts again on a new port.
    local attempt
    for attempt in 1 2 3 4 5; do
        port="$(free_port)"
        launch "$state_dir" "$service" "$port" && return
        if ((attempt == 5)) || ! grep -q EADDRINUSE "$(log_file "$state_dir" "$service")"; then
            stop "$state_dir"
            exit 1
        fi
        echo "azurite.sh: port $port was taken meanwhile; trying another" >&2
    done
}

# Starts the emulator of <service> on <port> and waits until it answers there. Returns 1 when
# it exits during start (its log is shown); exits when it never answers.
launch() {
    local state_dir="$1" service="$2" port="$3"
    local log pid
    log="$(log_file "$state_dir" "$service")"
    rm -f "$state_dir/env"

    # The Rust SDK sends an x-ms-version Azurite may not know yet: --skipApiVersionCheck.
    # --loose accepts headers Azurite does not implement instead of failing the request.
    # setsid puts Azurite in its own session, so it outlives this script and a terminal's ^C.
    # Both services keep their data under data/, each in files of its own.
    AZURITE_ACCOUNTS="$account:$account_key;$second_account:$second_account_key" \
        setsid "$(service_bin "$service")" \
        "--${service}Host" 127.0.0.1 \
        "--${service}Port" "$port" \
        --location "$state_dir/data" \
        --skipApiVersionCheck \
        --loose \
        --silent \
        >"$log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$(pid_file "$state_dir" "$service")"

    local deadline=$((SECONDS + start_timeout_seconds))
    # An answer counts only while Azurite runs: one that exited lost its port to whoever
    # answered.
    until azurite_answers "$port" && kill -0 "$pid" 2>/dev/null; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "azurite.sh: Azurite's $service service exited during start; its log ($log):" >&2
            cat "$log" >&2 || true
            rm -f "$(pid_file "$state_dir" "$service")"
            return 1
        fi
        if ((SECONDS >= deadline)); then
            echo "azurite.sh: Azurite's $service service did not answer on 127.0.0.1:$port within ${start_timeout_seconds}s; its log ($log):" >&2
            cat "$log" >&2 || true
            stop "$state_dir"
            exit 1
        fi
        sleep 0.2
    done
    echo "$port" >"$(port_file "$state_dir" "$service")"
}

stop() {
    local state_dir="$1"
    local service
    for service in "${services[@]}"; do
        stop_service "$state_dir" "$service"
    done
    rm -f "$state_dir/env"
}

stop_service() {
    local state_dir="$1" service="$2"
    local pid_file
    pid_file="$(pid_file "$state_dir" "$service")"
    if [[ ! -f "$pid_file" ]]; then
        return
    fi
    local pid
    pid="$(cat "$pid_file")"
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        # Give it a moment to flush its metadata, then make sure it is gone.
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$pid_file" "$(port_file "$state_dir" "$service")"
}

[[ $# -eq 2 ]] || usage
case "$1" in
start) start "$2" ;;
stop) stop "$2" ;;
*) usage ;;
esac
