#!/bin/sh
# The broker of the Compose stack: Mosquitto, and beside it a loop that has it read its CRL again (SIGHUP)
# whenever the revocation worker publishes a new one, so that a revoked gateway is refused without a
# restart. (The local stack's MosquittoBroker does the same in Python.) SIGTERM stops the broker, which
# saves its persistence file.
#   usage: broker.sh CONFIG CRL
set -eu

config=$1
crl=$2
mosquitto -c "$config" &
broker=$!
trap 'kill -TERM "$broker" 2>/dev/null || true' TERM INT

# stamp: the CRL's modification time and inode; publishing it replaces the file, so the inode changes.
stamp() { stat -c '%Y.%i' "$crl" 2>/dev/null || echo missing; }

seen=$(stamp)
while kill -0 "$broker" 2>/dev/null; do
    sleep 1
    now=$(stamp)
    if [ "$now" != "$seen" ]; then
        seen=$now
        echo "broker.sh: $crl changed; the broker reads it again"
        kill -HUP "$broker"
    fi
done
wait "$broker"
