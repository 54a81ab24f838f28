#!/bin/sh
# The keyring of personal data in its volume: made when it is missing (no arguments), or changed with
# `thuis keys ACTION ...` (add-master, rotate, retire, status); either way left to the portal's user alone.
# Beside it, in a volume of its own, the erasure ledger: made empty when missing, the portal's to append to.
#   usage: keys.sh [ACTION [ARGUMENT...]]
set -eu

: "${THUIS_KEYRING_FILE:?}" "${THUIS_UID:?}" "${THUIS_ERASURE_LEDGER_FILE:?}"
umask 077
if [ "$#" -gt 0 ]; then
    thuis keys "$@"
elif [ ! -f "$THUIS_KEYRING_FILE" ]; then
    thuis keys init
fi
directory=$(dirname -- "$THUIS_KEYRING_FILE")
chown -R "$THUIS_UID" "$directory"
chmod 700 "$directory"

ledger_dir=$(dirname -- "$THUIS_ERASURE_LEDGER_FILE")
install -d -o "$THUIS_UID" -m 0700 "$ledger_dir"
if [ ! -e "$THUIS_ERASURE_LEDGER_FILE" ]; then
    install -o "$THUIS_UID" -m 0600 /dev/null "$THUIS_ERASURE_LEDGER_FILE"
fi
