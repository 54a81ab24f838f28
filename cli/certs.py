"""`thuis certs`: create the private CA and the certificates of the broker, the ingest and gateways."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ops.certs import CertificateError, init_certificates, issue_gateway_certificate, issue_ingest_certificate
from thuis.identity import MAX_INGEST_WORKERS

log = logging.getLogger(__name__)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add `init` and `gateway`."""
    actions = parser.add_subparsers(dest="certs_action", metavar="ACTION", required=True)
    init = actions.add_parser(
        "init",
        help="create the CA, the broker's and the ingest's certificates where missing",
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


def run(args: argparse.Namespace) -> int:
    """Create what was asked; private keys are written with mode 0600 and never printed."""
    try:
        if args.certs_action == "init":
            created = init_certificates(args.dir, extra_server_names=tuple(args.san))
            for path in created:
                print(path)  # noqa: T201 - the command's output: the files it made
            if not created:
                log.info("all certificates already exist in %s", args.dir)
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
