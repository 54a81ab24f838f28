#!/usr/bin/env bash
# Make the secret files docker-compose.yml reads: a random password (and the portal's key) each, in
# secrets/ of the checkout (git- and docker-ignored) or the folder given. A second run keeps what exists.
#
# Compose without Swarm mounts a secret file as it is on the host, and the services read theirs as other
# users (thuis 10001, postgres 70), so the files are readable by all, inside a folder only you can open.
#   usage: scripts/compose-secrets.sh [DIRECTORY]
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
folder=${1:-$repo/secrets}

# secret NAME BYTES: write BYTES random bytes as hex into NAME, unless it exists.
secret() {
    local path=$folder/$1
    [ -e "$path" ] && return 0
    head -c "$2" /dev/urandom | od -An -tx1 | tr -d ' \n' >"$path"
    chmod 0444 "$path"
    printf '%s\n' "$path"
}

mkdir -p "$folder"
chmod 0700 "$folder"
for name in postgres_password ingest_db_password retention_db_password rollup_db_password api_db_password \
    certs_db_password; do
    secret "$name" 24
done
secret api_secret_key 32
