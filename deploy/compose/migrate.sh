#!/bin/sh
# Migrate the database as its owner, then let each service role given log in with the password of its
# secret file, $SECRETS_DIR/<role less "thuis_">_db_password (e.g. /run/secrets/ingest_db_password).
# Last, erase again whom the erasure ledger ($THUIS_ERASURE_LEDGER_FILE) names and the database still
# holds: a database restored from a backup older than their erasure. The services refuse it until then.
#   usage: migrate.sh ROLE...
set -eu

: "${SECRETS_DIR:?}" "${THUIS_ERASURE_LEDGER_FILE:?}"
thuis migrate
for role in "$@"; do
    thuis db set-password "$role" --password-file "$SECRETS_DIR/${role#thuis_}_db_password"
done
thuis erasures reapply
