"""`thuis certs`: the private CA, the certificates it issues, and the CRL that revokes them."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg

from ops.certs import (
    CertificateAuthority,
    CertificateError,
    init_certificates,
    issue_gateway_certificate,
    issue_ingest_certificate,
    issued_certificates,
    publish_crl,
)
from ops.revocations import (
    BrokerAddress,
    RevocationRun,
    RevocationSettings,
    apply_revocations,
    revoke_gateways,
)
from thuis.backoff import DATABASE_ERRORS, serve_with_reconnect, stop_on_signals
from thuis.db import connect
from thuis.identity import MAX_INGEST_WORKERS
from thuis.settings import SettingsError

log = logging.getLogger(__name__)

Work = Callable[[asyncpg.Connection], Awaitable[None]]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add `init`, `gateway`, `ingest`, `revoke`, `crl` and `revocations`."""
    actions = parser.add_subparsers(dest="certs_action", metavar="ACTION", required=True)
    init = actions.add_parser(
        "init",
        help="create the CA, the broker's and the ingest's certificates and an empty CRL where missing",
    )
    init.add_argument("--dir", type=Path, required=True, help="directory for keys and certificates")
    init.add_argument(
        "--san",
        action="append",
        default=[],
        metavar="NAME",
        help="another DNS name or IP address of the broker (repeatable; localhost and 127.0.0.1 always)",
    )
    gateway = actions.add_parser("gateway", help="issue a client certificate whose CN is a gateway serial")
    gateway.add_argument("serial", help="the gateway serial")
    gateway.add_argument("--dir", type=Path, required=True, help="directory holding the CA")
    ingest = actions.add_parser("ingest", help="issue the client certificate of another ingest worker")
    ingest.add_argument(
        "--worker",
        type=int,
        required=True,
        help=f"worker number 1-{MAX_INGEST_WORKERS}: 1 is `thuis-ingest` (made by init), k `thuis-ingest-k`",
    )
    ingest.add_argument("--dir", type=Path, required=True, help="directory holding the CA")
    revoke = actions.add_parser(
        "revoke", help="revoke every certificate issued to a gateway serial (or identity) and sign the CRL"
    )
    revoke.add_argument("serial", help="the gateway serial: the CN of the certificates to revoke")
    crl = actions.add_parser("crl", help="sign the CRL anew (its next-update time moves a year ahead)")
    revocations = actions.add_parser(
        "revocations",
        help="revoke the gateways that erasure or decommissioning queued in the database (role thuis_certs)",
        epilog="Configured by THUIS_DATABASE_URL (the thuis_certs role), THUIS_REVOCATION_INTERVAL_S and "
        "the THUIS_RECONNECT_* variables; the options below override them.",
    )
    revocations.add_argument("mode", choices=("run", "serve"), help="once, or every interval until SIGTERM")
    revocations.add_argument("--database-url", help="postgresql:// URL of thuis_certs")
    revocations.add_argument("--interval-s", type=float, help="seconds between runs of serve (default 5)")
    for action in (revoke, revocations):
        action.add_argument(
            "--broker-host",
            help="the broker: wait until it loaded the CRL, then end the connections revoked gateways hold",
        )
        action.add_argument("--broker-port", type=int, default=8883)
        action.add_argument(
            "--broker-name",
            default="localhost",
            help="the name in the broker's certificate (default: %(default)s)",
        )
    for action in (revoke, crl, revocations):
        action.add_argument("--dir", type=Path, required=True, help="directory holding the CA")
        action.add_argument(
            "--publish-to",
            type=Path,
            metavar="FILE",
            help="also write the signed CRL here: the broker's crlfile (it reloads it on SIGHUP)",
        )


def run(args: argparse.Namespace) -> int:
    """Do what was asked; private keys are written with mode 0600 and never printed."""
    try:
        if args.certs_action == "init":
            created = init_certificates(args.dir, extra_server_names=tuple(args.san))
            for path in created:
                print(path)  # noqa: T201 - the command's output: the files it made
            if not created:
                log.info("all certificates already exist in %s", args.dir)
        elif args.certs_action == "revoke":
            _revoke(args)
        elif args.certs_action == "crl":
            crl = CertificateAuthority(args.dir).write_crl()
            if args.publish_to is not None:
                publish_crl(crl, args.publish_to)
            print(f"CRL signed; next update {crl.next_update_utc:%Y-%m-%d}")  # noqa: T201
        elif args.certs_action == "revocations":
            return _revocations(args)
        else:
            if args.certs_action == "ingest":
                paths = issue_ingest_certificate(args.dir, args.worker)
            else:
                paths = issue_gateway_certificate(args.dir, args.serial)
            print(paths.cert)  # noqa: T201
            print(paths.key)  # noqa: T201
    except CertificateError as err:
        print(f"thuis certs: {err}", file=sys.stderr)  # noqa: T201
        return 2
    return 0


def _revoke(args: argparse.Namespace) -> None:
    ca = CertificateAuthority(args.dir)
    issued_certificates(ca, args.serial)  # refuses a malformed name or one the CA never issued to
    run = revoke_gateways(ca, [args.serial], publish_to=args.publish_to, broker=_broker(args))
    for serial_number in run.certificates:
        print(f"revoked {serial_number:x}")  # noqa: T201 - the command's output
    if not run.certificates:
        print(f"every certificate of {args.serial} was already revoked")  # noqa: T201
    if run.connections_ended:
        print(f"ended the connection of {args.serial} at the broker")  # noqa: T201
    elif run.broker_reloaded is False:
        print("the broker has not loaded the CRL yet: is it watching the file?", file=sys.stderr)  # noqa: T201


def _broker(args: argparse.Namespace) -> BrokerAddress | None:
    if not args.broker_host:
        return None
    return BrokerAddress(args.broker_host, args.broker_port, args.broker_name)


def _revocations(args: argparse.Namespace) -> int:
    try:
        settings = RevocationSettings.load(
            database_url=args.database_url, revocation_interval_s=args.interval_s
        )
    except SettingsError as err:
        print(f"thuis certs: {err}", file=sys.stderr)  # noqa: T201
        return 2
    broker = BrokerAddress(args.broker_host, args.broker_port, args.broker_name) if args.broker_host else None

    async def once(conn: asyncpg.Connection) -> None:
        _report(await apply_revocations(conn, ca_dir=args.dir, publish_to=args.publish_to, broker=broker))

    if args.mode == "serve":
        asyncio.run(_serve(once, settings))
        return 0
    try:
        asyncio.run(_run_once(once, settings))
    except DATABASE_ERRORS as err:
        print(f"thuis certs: the database failed: {err}", file=sys.stderr)  # noqa: T201
        return 1
    return 0


async def _run_once(once: Work, settings: RevocationSettings) -> None:
    conn = await connect(settings.database_url.get_secret_value(), application_name="thuis revocations")
    try:
        await once(conn)
    finally:
        await conn.close()


async def _serve(once: Work, settings: RevocationSettings) -> None:
    stopping = stop_on_signals()
    log.info("revocations: running every %.1f s", settings.revocation_interval_s)
    await serve_with_reconnect(
        once,
        settings=settings,
        interval_s=settings.revocation_interval_s,
        stopping=stopping,
        name="revocations",
    )


def _report(run: RevocationRun) -> None:
    if run.gateways:
        log.info(
            "revocations: %s: %d certificates revoked; broker reloaded: %s; connections ended: %s",
            ", ".join(run.gateways),
            len(run.certificates),
            {None: "not checked", True: "yes", False: "NOT YET"}[run.broker_reloaded],
            ", ".join(run.connections_ended) or "none",
        )
    elif run.crl_renewed:
        log.info("revocations: the CRL was signed anew")
