"""`thuis sim`: the simulated fleet, first registered and given certificates when asked (`--provision`).

`--provision-only` does that and stops: the one-shot service that holds the CA (docker-compose.yml) issues
the certificates, so the simulator itself never sees the CA key.
"""

from __future__ import annotations

import argparse
import logging

import psycopg

from gateway_sim import cli as simulator
from ops.provision import provision
from thuis.db import connect_sync
from thuis.settings import SettingsError, ThuisSettings

log = logging.getLogger(__name__)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the simulator's arguments, `--provision` and `--provision-only`."""
    simulator.configure_parser(parser)
    parser.add_argument(
        "--provision",
        action="store_true",
        help="first register the gateways in $THUIS_DATABASE_URL and issue their certificates",
    )
    parser.add_argument(
        "--provision-only",
        action="store_true",
        help="register the gateways and issue their certificates, then exit without publishing",
    )


def run(args: argparse.Namespace) -> int:
    """Provision if asked, then run the simulator (unless only provisioning was asked)."""
    if args.provision or args.provision_only:
        if args.certs is None:
            log.error("no certificate directory: pass --certs or set THUIS_CERTS_DIR")
            return 2
        try:
            database_url = ThuisSettings.load().database_url.get_secret_value()
            with connect_sync(database_url) as conn:
                # Back-filled readings must not predate the registration, or the ingest quarantines them.
                provision(
                    conn,
                    certs_dir=args.certs,
                    benext=args.benext,
                    maxem=args.maxem,
                    prefix=args.prefix,
                    registered_at=args.start,
                )
                conn.commit()
        except (psycopg.Error, SettingsError) as err:
            log.error("%s", err)  # noqa: TRY400 - the reason is the message, not a trace
            return 2
    if args.provision_only:
        return 0
    return simulator.run(args)
