#!/usr/bin/env bash
# Builds the deployment package: the zip that `func azure functionapp publish <app> --custom`
# would upload, at target/package/summary-womble.zip.
#
#   scripts/package.sh            (what `make package` runs)
#
# 1. The handler is built for Linux x86-64 so that it starts on every Functions Linux image:
#    statically linked against musl when the rustup target x86_64-unknown-linux-musl AND a musl
#    C compiler (x86_64-linux-musl-gcc or musl-gcc) are installed, else with cargo-zigbuild
#    against glibc 2.17 (Zig links against that version's symbols, whatever glibc this machine
#    has). cargo-zigbuild and Zig (PyPI packages cargo-zigbuild and ziglang, pinned below) are
#    installed into .tools/zigbuild on first use. Every handler packaged, built or handed in, is
#    checked by scripts/check-glibc.sh: one that needs a newer glibc is refused.
# 2. The files are chosen the way Core Tools chooses them: every file under the app root,
#    except .git/ and .vscode/ folders, files named .funcignore, .gitignore, local.settings.json
#    or project.lock.json, and whatever .funcignore (gitignore syntax, applied by git itself)
#    excludes. The freshly built handler takes the place of any ./handler. Anything beyond
#    host.json, the function folders and the handler means .funcignore misses a line: refused.
# 3. They are zipped with mode 644, except `handler`, which keeps its execute bit (755): it is
#    the file host.json names in customHandler.description.defaultExecutablePath.
#
# Settings (environment):
#   PACKAGE_HANDLER=<file>   package this already-built handler instead of building one
#   PACKAGE_ROOT=<dir>       the app root to package (default: this repository)
#   PACKAGE_OUT=<file>       where to write the zip (default: target/package/summary-womble.zip)
#   PACKAGE_ZIPPER=zip|python3   how to write the zip (default: zip when installed, else python3)
#   PACKAGE_ALLOW_STRAYS=1   package files beyond the app's own (see check_for_strays) instead
#                            of refusing
#   PACKAGE_ALLOW_NEWER_GLIBC=1   package a handler that needs a glibc newer than 2.17,
#                            with a warning, instead of refusing it (the tests use it to package
#                            a debug build)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
app_root="$(cd "${PACKAGE_ROOT:-$repo_root}" && pwd)"
out="${PACKAGE_OUT:-$repo_root/target/package/summary-womble.zip}"
cargo="${CARGO:-cargo}"
musl_target=x86_64-unknown-linux-musl
gnu_target=x86_64-unknown-linux-gnu
# The newest glibc the handler may need. 2.17 is the oldest glibc Rust's standard library
# supports, and older than that of any Functions Linux image (all Debian-based, 2.24 and later).
# The README names this version; a test keeps the two equal.
glibc_max=2.17
# The pinned build tools of the glibc path, installed into .tools/zigbuild.
ziglang_version=0.15.2
cargo_zigbuild_version=0.24.1
zigbuild_tools="$repo_root/.tools/zigbuild"

die() {
    echo "package.sh: $*" >&2
    exit 1
}

warn() {
    echo "package.sh: warning: $*" >&2
}

# Prints the musl C compiler cc-rs can use for the musl target, or nothing. cc-rs looks for
# x86_64-linux-musl-gcc; Debian's musl-tools installs musl-gcc, which is handed to it by name.
musl_c_compiler() {
    local compiler
    for compiler in x86_64-linux-musl-gcc musl-gcc; do
        if command -v "$compiler" >/dev/null; then
            echo "$compiler"
            return
        fi
    done
}

# Installs the pinned ziglang and cargo-zigbuild (both from PyPI: cargo-zigbuild's wheel is the
# crate's binary, so nothing is compiled) into .tools/zigbuild, once.
install_zigbuild() {
    local stamp="$zigbuild_tools/.installed-$ziglang_version-$cargo_zigbuild_version"
    [[ -f "$stamp" ]] && return
    echo "package.sh: installing ziglang $ziglang_version and cargo-zigbuild $cargo_zigbuild_version into $zigbuild_tools" >&2
    if ! python3 -m pip --version >/dev/null 2>&1; then
        if command -v apt-get >/dev/null && [[ "$(id -u)" == 0 ]]; then
            apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip >&2
        fi
        python3 -m pip --version >/dev/null 2>&1 ||
            die "python3 with pip is needed to install ziglang and cargo-zigbuild (Debian: apt-get install python3-pip)"
    fi
    rm -rf "$zigbuild_tools"
    # --target keeps them out of every Python environment; PIP_BREAK_SYSTEM_PACKAGES lets a
    # Debian pip write there at all (it changes nothing outside the folder).
    PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --quiet --disable-pip-version-check \
        --no-warn-script-location --target "$zigbuild_tools" \
        "ziglang==$ziglang_version" "cargo-zigbuild==$cargo_zigbuild_version" >&2 ||
        die "ziglang and cargo-zigbuild could not be installed"
    [[ -x "$zigbuild_tools/ziglang/zig" && -x "$zigbuild_tools/bin/cargo-zigbuild" ]] ||
        die "the ziglang and cargo-zigbuild packages did not install zig and cargo-zigbuild where expected"
    touch "$stamp"
}

# Prints the path of a Linux x86-64 release build of the handler, building it first.
build_handler() {
    [[ "$(uname -s)" == Linux ]] || die "the package needs a Linux x86-64 handler; build it on Linux"
    local installed_targets="" compiler
    if command -v rustup >/dev/null; then
        installed_targets="$(rustup target list --installed 2>/dev/null || true)"
    fi
    compiler="$(musl_c_compiler)"
    if grep -qx "$musl_target" <<<"$installed_targets" && [[ -n "$compiler" ]]; then
        echo "package.sh: building the handler for $musl_target (static, C compiler $compiler)" >&2
        (cd "$repo_root" && env "CC_${musl_target//-/_}=$compiler" \
            "$cargo" build --locked --release --target "$musl_target" --bin handler >&2)
        echo "$repo_root/target/$musl_target/release/handler"
        return
    fi
    if grep -qx "$musl_target" <<<"$installed_targets"; then
        echo "package.sh: the $musl_target target is installed but no musl C compiler (x86_64-linux-musl-gcc, musl-gcc) is: building against glibc $glibc_max instead" >&2
    fi
    [[ "$(uname -m)" == x86_64 ]] || grep -qx "$gnu_target" <<<"$installed_targets" ||
        die "this machine is not x86-64 and the $gnu_target target is not installed: rustup target add $gnu_target"
    install_zigbuild
    echo "package.sh: building the handler for $gnu_target against glibc $glibc_max (cargo-zigbuild)" >&2
    # zig is found on the PATH (the ziglang package ships it as ziglang/zig).
    (cd "$repo_root" && PATH="$zigbuild_tools/ziglang:$zigbuild_tools/bin:$PATH" \
        "$cargo" zigbuild --locked --release --target "$gnu_target.$glibc_max" --bin handler >&2)
    echo "$repo_root/target/$gnu_target/release/handler"
}

# Refuses (or, with PACKAGE_ALLOW_NEWER_GLIBC=1, warns about) a handler that needs a glibc
# newer than $glibc_max.
check_glibc() {
    local verdict
    if verdict="$("$repo_root/scripts/check-glibc.sh" "$1" "$glibc_max")"; then
        echo "package.sh: $verdict" >&2
        return
    fi
    if [[ "${PACKAGE_ALLOW_NEWER_GLIBC:-}" == 1 ]]; then
        warn "the handler needs a glibc newer than $glibc_max and will not start on older Functions images (PACKAGE_ALLOW_NEWER_GLIBC=1)"
        return
    fi
    die "the handler needs a glibc newer than $glibc_max (see above); build it with make package, or set PACKAGE_ALLOW_NEWER_GLIBC=1 to package it anyway"
}

# Succeeds when the file is an ELF executable for x86-64 (e_machine 0x3e).
is_linux_x86_64() {
    [[ "$(head -c 4 "$1" | od -An -c | tr -d ' ')" == '177ELF' ]] &&
        [[ "$(od -An -tx1 -j18 -N2 "$1" | tr -d ' \n')" == 3e00 ]]
}

# Prints, NUL-separated, the files under the app root that Core Tools would publish.
published_files() {
    command -v git >/dev/null || die "git is required to apply .funcignore"
    local scratch
    scratch="$(mktemp -d)"
    git init -q --bare "$scratch"
    local exclude=()
    if [[ -f "$app_root/.funcignore" ]]; then
        exclude=(--exclude-from="$app_root/.funcignore")
    fi
    # An empty repository sees every file as untracked; only .funcignore excludes (no
    # --exclude-standard, so .gitignore plays no part, as in Core Tools).
    git --git-dir="$scratch" --work-tree="$app_root" -C "$app_root" \
        ls-files --others -z "${exclude[@]}" |
        while IFS= read -r -d '' file; do
            local lower="${file,,}"
            case "${lower##*/}" in
            .funcignore | .gitignore | local.settings.json | project.lock.json) continue ;;
            esac
            [[ "/$lower" == */.vscode/* || "$file" == handler ]] && continue
            printf '%s\0' "$file"
        done
    rm -rf "$scratch"
}

# Writes the zip of the staged folder with the Python standard library, setting each entry's
# Unix mode in its external attributes (what unzip and the Functions host read).
zip_with_python() {
    python3 - "$1" "$2" <<'PYTHON'
import os, stat, sys, zipfile
stage, out = sys.argv[1], sys.argv[2]
names = []
for folder, _, files in os.walk(stage):
    for file in files:
        names.append(os.path.relpath(os.path.join(folder, file), stage).replace(os.sep, "/"))
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
    for name in sorted(names):
        path = os.path.join(stage, name)
        info = zipfile.ZipInfo.from_file(path, name)
        info.create_system = 3  # Unix, so the mode below is honoured
        info.external_attr = (stat.S_IFREG | stat.S_IMODE(os.stat(path).st_mode)) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        with open(path, "rb") as source:
            archive.writestr(info, source.read())
PYTHON
}

# Core Tools publishes whatever .funcignore lets through; anything beyond host.json, the
# function folders and the handler is almost certainly a missing .funcignore line (a tool's
# folder, a test's state). Such a package is refused, unless PACKAGE_ALLOW_STRAYS=1 asks for
# it as Core Tools would make it.
check_for_strays() {
    local strays=() file top
    while IFS= read -r -d '' file; do
        file="${file#./}"
        top="${file%%/*}"
        if [[ "$file" == host.json || "$file" == handler ]]; then
            continue
        fi
        if [[ "$file" == */* && -f "$stage/$top/function.json" ]]; then
            continue
        fi
        strays+=("$file")
    done < <(cd "$stage" && find . -type f -print0)
    ((${#strays[@]} > 0)) || return 0

    local sorted level=error
    [[ "${PACKAGE_ALLOW_STRAYS:-}" == 1 ]] && level=warning
    mapfile -t sorted < <(printf '%s\n' "${strays[@]}" | LC_ALL=C sort)
    echo "package.sh: $level: Core Tools would also publish these ${#sorted[@]} files, which are not part of the app:" >&2
    printf "package.sh: $level:   %s\n" "${sorted[@]:0:20}" >&2
    ((${#sorted[@]} <= 20)) || echo "package.sh: $level:   ... and $((${#sorted[@]} - 20)) more" >&2
    if [[ "$level" == error ]]; then
        die "add them to .funcignore (gitignore syntax), or set PACKAGE_ALLOW_STRAYS=1 to package them anyway"
    fi
    warn "they are in the package, as PACKAGE_ALLOW_STRAYS=1 asked"
}

main() {
    [[ -f "$app_root/host.json" ]] || die "$app_root has no host.json: not a Functions app root"
    grep -Eq '"defaultExecutablePath"[[:space:]]*:[[:space:]]*"handler"' "$app_root/host.json" ||
        die "host.json does not run \"handler\" (customHandler.description.defaultExecutablePath)"

    # The selection first: a package that would be refused should not wait for a release build.
    stage="$(mktemp -d)"
    trap 'rm -rf "$stage"' EXIT
    local file
    while IFS= read -r -d '' file; do
        mkdir -p "$stage/$(dirname "$file")"
        # -RL: a symbolic link is published as what it points to, as Core Tools does.
        cp -RL "$app_root/$file" "$stage/$file"
    done < <(published_files)
    chmod -R u=rwX,go=rX "$stage"
    find "$stage" -type f -exec chmod 644 {} +
    compgen -G "$stage/*/function.json" >/dev/null || die "no function folder (*/function.json) under $app_root"
    check_for_strays

    local handler
    if [[ -n "${PACKAGE_HANDLER:-}" ]]; then
        handler="$PACKAGE_HANDLER"
        echo "package.sh: packaging the handler at $handler (not building)" >&2
    else
        handler="$(build_handler)"
    fi
    [[ -f "$handler" ]] || die "no handler at $handler"
    is_linux_x86_64 "$handler" || die "$handler is not a Linux x86-64 executable"
    check_glibc "$handler"
    cp "$handler" "$stage/handler"
    chmod 755 "$stage/handler"

    local zipper="${PACKAGE_ZIPPER:-}"
    if [[ -z "$zipper" ]]; then
        if command -v zip >/dev/null; then zipper=zip; else zipper=python3; fi
    fi
    mkdir -p "$(dirname "$out")"
    out="$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"
    rm -f "$out" "$out.partial"
    case "$zipper" in
    zip)
        # -X: no extra timestamps or uid/gid fields; -D: no folder entries. Modes are kept.
        (cd "$stage" && find . -type f | sed 's|^\./||' | LC_ALL=C sort | zip -q -X -D "$out.partial" -@)
        ;;
    python3) zip_with_python "$stage" "$out.partial" ;;
    *) die "PACKAGE_ZIPPER=$zipper: use zip or python3" ;;
    esac
    mv "$out.partial" "$out"

    echo "package.sh: wrote $out ($(cd "$stage" && find . -type f | wc -l) files):" >&2
    (cd "$stage" && find . -type f | sed 's|^\./|  |' | LC_ALL=C sort) >&2
}

main "$@"
