"""`thuis gateway register | decommission`: register a gateway at a site, or take one out of service."""

from __future__ import annotations

import argparse
import datetime as dt
import sys

from cli.settings import CommandError, database_url
from ops.registry import RegistryError, create_site, decommission_gateway, register_gateway
from thuis.db import connect_sync
from thuis.identity import VENDORS


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add `register` and `decommission`."""
    actions = parser.add_subparsers(dest="gateway_action", metavar="ACTION", required=True)
    register = actions.add_parser("register", help="register a gateway at a site")
    register.add_argument("serial", help="the gateway serial (its certificate's CN)")
    register.add_argument("--vendor", choices=VENDORS, required=True)
    site = register.add_mutually_exclusive_group(required=True)
    site.add_argument("--site-id", type=int, help="an existing site")
    site.add_argument("--new-site", metavar="LABEL", help="create a site with this label")
    register.add_argument("--time-zone", default="Europe/Amsterdam", help="of a new site")
    register.add_argument(
        "--database-url", help="postgresql:// URL of the schema owner (default: THUIS_DATABASE_URL)"
    )
    register.add_argument(
        "--registered-at",
        type=dt.datetime.fromisoformat,
        default=None,
        help="ISO time from which the gateway's readings are accepted (default: now)",
    )
    decommission = actions.add_parser(
        "decommission",
        help="take a gateway out of service: its history stays, its certificates are revoked",
        description="Marks the gateway decommissioned; the revocation worker (`thuis certs revocations`) "
        "then revokes its certificates and the broker refuses it.",
    )
    decommission.add_argument("serial", help="the gateway serial")
    decommission.add_argument(
        "--database-url", help="postgresql:// URL of the schema owner (default: THUIS_DATABASE_URL)"
    )


def run(args: argparse.Namespace) -> int:
    """Register and print the site id, or decommission and print when."""
    try:
        url = database_url(args)
    except CommandError as err:
        print(f"thuis gateway: {err}", file=sys.stderr)  # noqa: T201
        return 2
    if args.gateway_action == "decommission":
        try:
            with connect_sync(url) as conn:
                when = decommission_gateway(conn, gateway_serial=args.serial)
        except RegistryError as err:
            print(f"thuis gateway: {err}", file=sys.stderr)  # noqa: T201
            return 1
        print(f"{args.serial} decommissioned at {when.isoformat()}; its revocation is queued")  # noqa: T201
        return 0
    if args.registered_at is not None and args.registered_at.tzinfo is None:
        print("thuis gateway: --registered-at needs a UTC offset", file=sys.stderr)  # noqa: T201
        return 2
    try:
        with connect_sync(url) as conn:
            site_id = args.site_id or create_site(conn, label=args.new_site, time_zone=args.time_zone)
            register_gateway(
                conn,
                gateway_serial=args.serial,
                vendor=args.vendor,
                site_id=site_id,
                registered_at=args.registered_at,
            )
    except RegistryError as err:
        print(f"thuis gateway: {err}", file=sys.stderr)  # noqa: T201
        return 1
    print(site_id)  # noqa: T201
    return 0
