"""`thuis ingest`: run the MQTT to TimescaleDB ingest service."""

from __future__ import annotations

import argparse
import asyncio
import logging

from ingest.service import serve
from ingest.settings import IngestSettings
from mqttv5 import SessionFailedError
from privacy.keys.ledger import ErasuresNotApplied, LedgerError
from thuis.identity import certificate_common_name
from thuis.settings import MqttClientSettings, SettingsError, load_settings

log = logging.getLogger(__name__)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Describe the ingest's configuration, which comes from the environment."""
    parser.epilog = (
        "Configured by environment variables: THUIS_DATABASE_URL (required), THUIS_MQTT_HOST, "
        "THUIS_MQTT_PORT, THUIS_MQTT_CA_FILE, THUIS_MQTT_CERT_FILE, THUIS_MQTT_KEY_FILE (required), "
        "THUIS_RECEIVE_MAXIMUM, THUIS_BATCH_MAX_MESSAGES, THUIS_BATCH_LINGER_S, THUIS_MAX_PAYLOAD_BYTES."
    )
    parser.add_argument(
        "--client-id",
        help="MQTT client id (default: the certificate's CN, which the broker enforces anyway)",
    )
    parser.add_argument(
        "--retire",
        action="store_true",
        help="retire this worker of a shared subscription: leave the subscription, store what is still "
        "queued for it, end its session at the broker, and exit",
    )


def run(args: argparse.Namespace) -> int:
    """Run until SIGTERM; exit 2 on a refused configuration, 1 if the broker cannot give the guarantees."""
    try:
        settings = load_settings(IngestSettings)
        mqtt = load_settings(MqttClientSettings)
    except SettingsError as err:
        log.error("%s", err)  # noqa: TRY400 - the reason is the message; a trace would show nothing more
        return 2
    client_id = args.client_id or certificate_common_name(mqtt.cert_file)
    try:
        asyncio.run(serve(settings, mqtt, client_id=client_id, retire=args.retire))
    except (SessionFailedError, ErasuresNotApplied, LedgerError) as err:
        log.critical("the ingest cannot run: %s", err)
        return 1
    return 0
