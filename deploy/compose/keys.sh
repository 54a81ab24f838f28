#!/bin/sh
# The keyring of personal data in its volume: made when it is missing (no arguments), or changed with
# `thuis keys ACTION ...` (add-master, rotate, retire, status); either way left to the portal's user alone.
#   usage: keys.sh [ACTION [ARGUMENT...]]
set -eu

: "${THUIS_KEYRING_FILE:?}" "${THUIS_UID:?}"
umask 077
if [ "$#" -gt 0 ]; then
    thuis keys "$@"
elif [ ! -f "$THUIS_KEYRING_FILE" ]; then
    thuis keys init
fi
directory=$(dirname -- "$THUIS_KEYRING_FILE")
chown -R "$THUIS_UID" "$directory"
chmod 700 "$directory"
