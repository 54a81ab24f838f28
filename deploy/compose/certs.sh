#!/bin/sh
# The certificates of the Compose stack, issued by the service that holds the CA, and handed out so that
# each service's volume holds exactly what that service needs:
#   $CA_DIR        the CA (ca.key), its CRL, every certificate as issued; mounted by this service and by
#                  the revocation worker (as $THUIS_UID), which signs the CRL anew when it revokes
#   $BROKER_DIR    ca.crt, broker.crt, broker.key, acl, mosquitto.conf, broker.sh   (the broker)
#   $CRL_DIR       crl.pem, which the revocation worker replaces (the broker reads it, as $BROKER_UID)
#   $INGEST_DIR    ca.crt, thuis-ingest.crt, thuis-ingest.key             (the ingest, as $THUIS_UID)
#   $GATEWAYS_DIR  ca.crt, gateways/<serial>.crt|.key                     (the simulator, as $THUIS_UID)
# The simulated gateways are registered in the database too (arguments: the fleet, as for `thuis sim`).
# Safe to run again: what exists is kept, and the copies are made anew.
#   usage: certs.sh --benext N --maxem M [--prefix P]
set -eu

: "${CA_DIR:?}" "${BROKER_DIR:?}" "${INGEST_DIR:?}" "${GATEWAYS_DIR:?}" "${CRL_DIR:?}"
: "${BROKER_UID:?}" "${THUIS_UID:?}" "${BROKER_HOST:?}"
: "${BROKER_CONFIG_DIR:?}" "${BROKER_DATA_DIR:?}" "${BROKER_CRL_DIR:?}"

umask 077
thuis certs init --dir "$CA_DIR" --san "$BROKER_HOST"
thuis sim --provision-only --certs "$CA_DIR" "$@"
# The revocation worker runs as the image's user: the CA is its to read, and its CRL to sign anew.
chown -R "$THUIS_UID" "$CA_DIR"
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
hand_out "$BROKER_UID" 0755 "$BROKER_DIR" "$(dirname -- "$0")/../mosquitto/broker.sh"
thuis broker acl >"$BROKER_DIR/acl"
thuis broker config --config-dir "$BROKER_CONFIG_DIR" --data-dir "$BROKER_DATA_DIR" --port 8883 \
    --crl-file "$BROKER_CRL_DIR/crl.pem" >"$BROKER_DIR/mosquitto.conf"
chown "$BROKER_UID" "$BROKER_DIR/acl" "$BROKER_DIR/mosquitto.conf"

# The CRL: the revocation worker (as $THUIS_UID) replaces it; the broker only reads it.
install -d -o "$THUIS_UID" -m 0755 "$CRL_DIR"
install -o "$THUIS_UID" -m 0644 "$CA_DIR/crl.pem" "$CRL_DIR/"

hand_out "$THUIS_UID" 0644 "$INGEST_DIR" "$CA_DIR/ca.crt" "$CA_DIR/thuis-ingest.crt"
hand_out "$THUIS_UID" 0600 "$INGEST_DIR" "$CA_DIR/thuis-ingest.key"

hand_out "$THUIS_UID" 0644 "$GATEWAYS_DIR" "$CA_DIR/ca.crt"
hand_out "$THUIS_UID" 0644 "$GATEWAYS_DIR/gateways" "$CA_DIR"/gateways/*.crt
hand_out "$THUIS_UID" 0600 "$GATEWAYS_DIR/gateways" "$CA_DIR"/gateways/*.key
