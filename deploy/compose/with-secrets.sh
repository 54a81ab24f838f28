#!/bin/sh
# Run a command with the secrets its Compose service was given as files (/run/secrets/...) in the variables
# the programs read, so that no secret stands in docker-compose.yml or in the container's configuration:
#   PGPASSWORD_FILE            -> PGPASSWORD (libpq and asyncpg use it when THUIS_DATABASE_URL has none)
#   THUIS_API_SECRET_KEY_FILE  -> THUIS_API_SECRET_KEY
# A missing, unreadable or short secret stops the service here, with the file named.
#   usage: with-secrets.sh COMMAND [ARGUMENT...]
set -eu

# from_file VARIABLE FILE MINIMUM: export VARIABLE with the content of FILE, at least MINIMUM characters.
from_file() {
    value=$(cat -- "$2") || { echo "with-secrets: cannot read $2 (for $1)" >&2; exit 2; }
    # Each placeholder the settings refuse ("changeme", "postgres", ...) is shorter than any minimum here.
    if [ "${#value}" -lt "$3" ]; then
        echo "with-secrets: $2 holds fewer than $3 characters (for $1)" >&2
        exit 2
    fi
    export "$1=$value"
}

if [ -n "${PGPASSWORD_FILE:-}" ]; then
    from_file PGPASSWORD "$PGPASSWORD_FILE" 16
fi
if [ -n "${THUIS_API_SECRET_KEY_FILE:-}" ]; then
    from_file THUIS_API_SECRET_KEY "$THUIS_API_SECRET_KEY_FILE" 32
fi
unset value
exec "$@"
