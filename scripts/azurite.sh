#!/usr/bin/env bash
# Starts and stops the Azurite blob emulator for local runs and tests.
#
#   scripts/azurite.sh start <state-dir>   install (npm ci) if needed, start on a free loopback
#                                          port, wait until it answers, write <state-dir>/env
#   scripts/azurite.sh stop <state-dir>    stop it; stopping a stopped emulator is fine
#
# <state-dir>/env exports AZURITE_BLOB_PORT and AZURITE_CONNECTION_STRING, so a caller can
# `source` it. The port is chosen at start so that parallel runs never collide on 10000; set
# AZURITE_BLOB_PORT to insist on one (10000 is what `UseDevelopmentStorage=true` expects).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
azurite_bin="$repo_root/node_modules/.bin/azurite-blob"

# The well-known development account of Azurite and the storage emulator; it is public.
account=devstoreaccount1
account_key='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='

start_timeout_seconds=30

die() {
    echo "azurite.sh: $*" >&2
    exit 1
}

usage() {
    echo "usage: $0 start|stop <state-dir>" >&2
    exit 2
}

# Installs the pinned Azurite from package.json / package-lock.json when it is missing.
install_azurite() {
    if [[ -x "$azurite_bin" ]]; then
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
    [[ -x "$azurite_bin" ]] || die "npm finished but $azurite_bin is still missing"
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

# Succeeds when Azurite itself answers HTTP on 127.0.0.1:<port> (its `Server` header says so):
# while a new Azurite is still starting, another process may already hold the port it was given.
azurite_answers() {
    local reply
    reply="$( (exec 3<>"/dev/tcp/127.0.0.1/$1" &&
        printf 'GET /devstoreaccount1?comp=list HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3 &&
        timeout 2 cat <&3) 2>/dev/null)" || true
    grep -qi '^server: azurite' <<<"$reply"
}

is_running() {
    local pid_file="$1/azurite.pid"
    [[ -f "$pid_file" ]] && kill -0 "$(cat "$pid_file")" 2>/dev/null
}

start() {
    local state_dir="$1"
    mkdir -p "$state_dir/data"
    state_dir="$(cd "$state_dir" && pwd)"

    if is_running "$state_dir"; then
        [[ -f "$state_dir/env" ]] || die "Azurite runs (pid $(cat "$state_dir/azurite.pid")) but $state_dir/env is missing"
        echo "azurite.sh: already running (pid $(cat "$state_dir/azurite.pid"))" >&2
        return
    fi

    install_azurite

    local port="${AZURITE_BLOB_PORT:-}"
    if [[ -n "$port" ]]; then
        if ! [[ "$port" =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then
            die "AZURITE_BLOB_PORT=$port is not a TCP port"
        elif port_answers "$port"; then
            die "port $port (AZURITE_BLOB_PORT) is already in use on 127.0.0.1; stop what listens there or unset AZURITE_BLOB_PORT"
        fi
        launch "$state_dir" "$port"
        return
    fi
    # A port the OS just handed out can be taken by another process before Azurite binds it;
    # Azurite then exits with EADDRINUSE, and starts again on a new port.
    local attempt
    for attempt in 1 2 3 4 5; do
        port="$(free_port)"
        launch "$state_dir" "$port" && return
        if ((attempt == 5)) || ! grep -q EADDRINUSE "$state_dir/azurite.log"; then
            exit 1
        fi
        echo "azurite.sh: port $port was taken meanwhile; trying another" >&2
    done
}

# Starts Azurite on <port> and waits until it answers there. Returns 1 when Azurite exits during
# start (its log is shown); exits when it never answers.
launch() {
    local state_dir="$1" port="$2"
    local log pid
    log="$state_dir/azurite.log"
    rm -f "$state_dir/env"

    # The Rust SDK sends an x-ms-version Azurite may not know yet: --skipApiVersionCheck.
    # --loose accepts headers Azurite does not implement instead of failing the request.
    # setsid puts Azurite in its own session, so it outlives this script and a terminal's ^C.
    setsid "$azurite_bin" \
        --blobHost 127.0.0.1 \
        --blobPort "$port" \
        --location "$state_dir/data" \
        --skipApiVersionCheck \
        --loose \
        --silent \
        >"$log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$state_dir/azurite.pid"

    local deadline=$((SECONDS + start_timeout_seconds))
    # An answer counts only while Azurite runs: one that exited lost its port to whoever
    # answered.
    until azurite_answers "$port" && kill -0 "$pid" 2>/dev/null; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "azurite.sh: Azurite exited during start; its log ($log):" >&2
            cat "$log" >&2 || true
            rm -f "$state_dir/azurite.pid"
            return 1
        fi
        if ((SECONDS >= deadline)); then
            echo "azurite.sh: Azurite did not answer on 127.0.0.1:$port within ${start_timeout_seconds}s; its log ($log):" >&2
            cat "$log" >&2 || true
            stop "$state_dir"
            exit 1
        fi
        sleep 0.2
    done

    cat >"$state_dir/env" <<EOF
export AZURITE_BLOB_PORT=$port
export AZURITE_CONNECTION_STRING='DefaultEndpointsProtocol=http;AccountName=$account;AccountKey=$account_key;BlobEndpoint=http://127.0.0.1:$port/$account;'
EOF
    echo "azurite.sh: Azurite blob service on 127.0.0.1:$port (pid $pid); source $state_dir/env" >&2
}

stop() {
    local state_dir="$1"
    local pid_file="$state_dir/azurite.pid"
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
    rm -f "$pid_file" "$state_dir/env"
}

[[ $# -eq 2 ]] || usage
case "$1" in
start) start "$2" ;;
stop) stop "$2" ;;
*) usage ;;
esac
