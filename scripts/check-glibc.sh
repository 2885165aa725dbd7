#!/usr/bin/env bash
# Refuses an executable that needs a newer glibc than the oldest one it must start on.
#
#   scripts/check-glibc.sh <executable> <max-version>      e.g. scripts/check-glibc.sh handler 2.17
#
# A dynamically linked executable names the glibc symbol versions it needs (GLIBC_2.34 and so
# on) in its dynamic symbol table; the loader refuses to start it on a glibc older than the
# highest of them ("version `GLIBC_2.34' not found"). A statically linked one (musl) needs none.
# Prints what it found on stdout; exits 0 when the executable is static or its highest version
# is at most <max-version>, 1 when it is newer (the message names both), 2 on bad usage.
# objdump comes with binutils; when it is missing it is installed (Debian: apt-get), as root.
set -euo pipefail

usage() {
    echo "usage: scripts/check-glibc.sh <executable> <max-version, e.g. 2.17>" >&2
    exit 2
}

(($# == 2)) || usage
binary="$1"
max="$2"
[[ -f "$binary" ]] || { echo "check-glibc.sh: no file at $binary" >&2; exit 2; }
[[ "$max" =~ ^[0-9]+(\.[0-9]+)+$ ]] || usage

if ! command -v objdump >/dev/null; then
    if command -v apt-get >/dev/null && [[ "$(id -u)" == 0 ]]; then
        echo "check-glibc.sh: installing binutils (for objdump)" >&2
        apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq binutils >&2
    fi
    command -v objdump >/dev/null || { echo "check-glibc.sh: objdump is required: install binutils" >&2; exit 2; }
fi

# Only the dynamic symbols are read: that is what the loader checks. A static executable has
# no dynamic section at all, which objdump reports on stderr.
if ! symbols="$(LC_ALL=C objdump -T "$binary" 2>/dev/null)"; then
    if LC_ALL=C objdump -p "$binary" 2>/dev/null | grep -q 'NEEDED'; then
        echo "check-glibc.sh: $binary is linked dynamically but its dynamic symbols cannot be read" >&2
        exit 1
    fi
    echo "$binary: statically linked, needs no glibc"
    exit 0
fi
highest="$(grep -oE 'GLIBC_[0-9]+(\.[0-9]+)+' <<<"$symbols" | sed 's/^GLIBC_//' | sort -uV | tail -n 1 || true)"
if [[ -z "$highest" ]]; then
    echo "$binary: needs no versioned glibc symbol"
    exit 0
fi
if [[ "$(printf '%s\n%s\n' "$highest" "$max" | sort -V | tail -n 1)" != "$max" ]]; then
    echo "check-glibc.sh: $binary needs GLIBC_$highest, newer than GLIBC_$max, the oldest glibc it must start on" >&2
    echo "check-glibc.sh: the symbols that need it:" >&2
    grep -E "GLIBC_${highest//./\\.}([^.0-9]|$)" <<<"$symbols" | awk '{ print "check-glibc.sh:   " $NF }' | sort -u | head -n 10 >&2
    exit 1
fi
echo "$binary: highest glibc symbol version GLIBC_$highest (at most GLIBC_$max)"
