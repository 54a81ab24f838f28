#!/bin/sh
# The certificates of the Compose stack, issued by the only service that holds the CA, and handed out so
# that each service's volume holds exactly what that service needs:
#   $CA_DIR        the CA (ca.key), and every certificate as issued; mounted by this service alone
#   $BROKER_DIR    ca.crt, broker.crt, broker.key, acl, mosquitto.conf   (the broker, as $BROKER_UID)
#   $INGEST_DIR    ca.crt, thuis-ingest.crt, thuis-ingest.key             (the ingest, as $THUIS_UID)
#   $GATEWAYS_DIR  ca.crt, gateways/<serial>.crt|.key                     (the simulator, as $THUIS_UID)
# The simulated gateways are registered in the database too (arguments: the fleet, as for `thuis sim`).
# Safe to run again: what exists is kept, and the copies are made anew.
#   usage: certs.sh --benext N --maxem M [--prefix P]
set -eu

: "${CA_DIR:?}" "${BROKER_DIR:?}" "${INGEST_DIR:?}" "${GATEWAYS_DIR:?}"
: "${BROKER_UID:?}" "${THUIS_UID:?}" "${BROKER_CONFIG_DIR:?}" "${BROKER_DATA_DIR:?}" "${BROKER_HOST:?}"

umask 077
thuis certs init --dir "$CA_DIR" --san "$BROKER_HOST"
thuis sim --provision-only --certs "$CA_DIR" "$@"
chmod 700 "$CA_DIR"

# hand_out OWNER MODE DIRECTORY FILE...: copy FILEs into DIRECTORY, owned by OWNER with MODE.
hand_out() {
    owner=$1 mode=$2 directory=$3
    shift 3
    install -d -o "$owner" -m 0700 "$directory"
    install -o "$owner" -m "$mode" "$@" "$directory/"
}

hand_out "$BROKER_UID" 0644 "$BROKER_DIR" "$CA_DIR/ca.crt" "$CA_DIR/broker.crt"
hand_out "$BROKER_UID" 0600 "$BROKER_DIR" "$CA_DIR/broker.key"
thuis broker acl >"$BROKER_DIR/acl"
thuis broker config --config-dir "$BROKER_CONFIG_DIR" --data-dir "$BROKER_DATA_DIR" --port 8883 \
    >"$BROKER_DIR/mosquitto.conf"
chown "$BROKER_UID" "$BROKER_DIR/acl" "$BROKER_DIR/mosquitto.conf"

hand_out "$THUIS_UID" 0644 "$INGEST_DIR" "$CA_DIR/ca.crt" "$CA_DIR/thuis-ingest.crt"
hand_out "$THUIS_UID" 0600 "$INGEST_DIR" "$CA_DIR/thuis-ingest.key"

hand_out "$THUIS_UID" 0644 "$GATEWAYS_DIR" "$CA_DIR/ca.crt"
hand_out "$THUIS_UID" 0644 "$GATEWAYS_DIR/gateways" "$CA_DIR"/gateways/*.crt
hand_out "$THUIS_UID" 0600 "$GATEWAYS_DIR/gateways" "$CA_DIR"/gateways/*.key
