#!/usr/bin/env bash
# Makes sure the browser the dashboard tests drive is installed: Debian's Chromium and its
# WebDriver server, chromedriver. Installs both with apt-get only when one is missing, so a
# machine that has them is not touched (and needs no network).
#
#   scripts/browser.sh
#
# Installing needs root (or sudo) and Debian's package mirrors.
set -euo pipefail

chromium=/usr/bin/chromium
chromedriver=/usr/bin/chromedriver

if [[ -x "$chromium" && -x "$chromedriver" ]]; then
    exit 0
fi

echo "browser.sh: installing chromium and chromium-driver for the dashboard tests" >&2
command -v apt-get >/dev/null || {
    echo "browser.sh: apt-get not found; install Chromium and chromedriver at $chromium and $chromedriver" >&2
    exit 1
}
sudo=()
if [[ "$(id -u)" -ne 0 ]]; then
    command -v sudo >/dev/null || {
        echo "browser.sh: installing packages needs root or sudo" >&2
        exit 1
    }
    sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update
"${sudo[@]}" apt-get install -y --no-install-recommends chromium chromium-driver
[[ -x "$chromium" && -x "$chromedriver" ]] || {
    echo "browser.sh: $chromium or $chromedriver is still missing after apt-get install" >&2
    exit 1
}
