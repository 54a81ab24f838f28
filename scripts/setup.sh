#!/usr/bin/env bash
# Install what Thuis needs on a Debian machine, only what is missing; a second run does nothing.
#
#   PostgreSQL with server headers, TimescaleDB (built from Debian trixie's source package, Apache part),
#   Mosquitto, Chromium (for the web pages' browser tests), and a virtual environment in .venv with the
#   project and its dev extras.
#
# Runs as root (or with sudo available). Writes no package-host name anywhere: the trixie source
# entry reuses the mirror URI already configured in this machine's apt sources, in a throwaway apt
# configuration that never touches /etc/apt.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
pg_major=${THUIS_PG_MAJOR:-15}
pg_bin=/usr/lib/postgresql/$pg_major/bin
venv=$repo/.venv

say() { printf 'setup: %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing_packages() {
    local pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || printf '%s\n' "$pkg"
    done
}

install_debian_packages() {
    local wanted=(
        "postgresql-$pg_major" "postgresql-server-dev-$pg_major" postgresql-contrib
        cmake make gcc libssl-dev dpkg-dev
        mosquitto mosquitto-clients
        # The web pages' browser tests drive Debian's Chromium through Playwright (never `playwright install`).
        chromium
    )
    # The project needs Python 3.11 or newer with venv; Debian bookworm's python3 is 3.11.
    if ! python3 -c 'import sys, ensurepip, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        wanted+=(python3 python3-venv)
    fi
    local missing
    missing=$(missing_packages "${wanted[@]}")
    [ -z "$missing" ] && return 0
    say "installing Debian packages: $(echo "$missing" | tr '\n' ' ')"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    # shellcheck disable=SC2086
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

# The mirror URI of the machine's own Debian main archive, read from its apt sources.
debian_mirror_uri() {
    local uri
    uri=$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | awk '{print $2}' | grep -v -- '-security' | head -n 1 || true)
    if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
        uri=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) {print $i; exit}}' \
            /etc/apt/sources.list)
    fi
    [ -n "$uri" ] || { say "no Debian mirror found in the apt sources"; exit 1; }
    printf '%s\n' "$uri"
}

install_timescaledb() {
    local pkglibdir
    pkglibdir=$("$pg_bin/pg_config" --pkglibdir)
    if ls "$pkglibdir"/timescaledb-2.*.so >/dev/null 2>&1; then
        return 0
    fi
    say "building TimescaleDB (Apache part) from Debian trixie's source package"
    local work
    work=$(mktemp -d /tmp/thuis-timescaledb.XXXXXX)
    trap 'rm -rf "$work"' RETURN
    mkdir -p "$work/lists/partial" "$work/archives/partial"
    cat >"$work/trixie-src.sources" <<EOF
Types: deb-src
URIs: $(debian_mirror_uri)
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    local apt_opts=(
        -o "Dir::Etc::SourceList=$work/trixie-src.sources"
        -o "Dir::Etc::SourceParts=/dev/null"
        -o "Dir::State::Lists=$work/lists"
        -o "Dir::Cache::Archives=$work/archives"
        -o "APT::Sandbox::User=root"
    )
    apt-get "${apt_opts[@]}" update -qq
    (cd "$work" && apt-get "${apt_opts[@]}" source -qq --download-only timescaledb >/dev/null \
        && dpkg-source -x --no-check ./timescaledb_*.dsc src >/dev/null)
    (
        cd "$work/src"
        PATH=$pg_bin:$PATH ./bootstrap -DAPACHE_ONLY=1 -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF \
            -DWARNINGS_AS_ERRORS=OFF -DGENERATE_DOWNGRADE_SCRIPT=OFF \
            -DPG_CONFIG="$pg_bin/pg_config"
        make -C build -j"$(nproc)"
        as_root make -C build install
    ) >"$work/build.log" 2>&1 || { tail -n 40 "$work/build.log" >&2; say "TimescaleDB build failed"; exit 1; }
    say "TimescaleDB installed into $pkglibdir"
}

install_virtualenv() {
    local stamp=$venv/.thuis-installed
    local digest
    digest=$(sha256sum "$repo/pyproject.toml" | cut -d' ' -f1)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ]; then
        return 0
    fi
    say "installing the project and its dev extras into $venv"
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    local log=$venv/pip-install.log
    {
        "$venv/bin/python" -m pip install --upgrade pip &&
        "$venv/bin/python" -m pip install -e "$repo[dev]"
    } >"$log" 2>&1 || { tail -n 40 "$log" >&2; say "installing the project failed; see $log"; exit 1; }
    printf '%s\n' "$digest" >"$stamp"
}

install_debian_packages
install_timescaledb
install_virtualenv
