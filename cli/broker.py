"""`thuis broker config`: render the Mosquitto configuration of deploy/mosquitto."""

from __future__ import annotations

import argparse
from pathlib import Path

from ops.localstack import (
    DEFAULT_MAX_PACKET_SIZE,
    DEFAULT_MAX_QUEUED_MESSAGES,
    render_broker_acl,
    render_broker_config,
)
from thuis.identity import MAX_INGEST_WORKERS


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add `config` and `acl`."""
    actions = parser.add_subparsers(dest="broker_action", metavar="ACTION", required=True)
    config = actions.add_parser("config", help="print mosquitto.conf for the given paths")
    config.add_argument(
        "--config-dir", type=Path, required=True, help="directory with ca.crt, broker.crt, broker.key and acl"
    )
    config.add_argument("--data-dir", type=Path, required=True, help="directory for the persistence file")
    config.add_argument("--port", type=int, default=8883)
    config.add_argument("--bind", default="0.0.0.0", help="address to listen on (default: %(default)s)")  # noqa: S104
    config.add_argument("--max-queued-messages", type=int, default=DEFAULT_MAX_QUEUED_MESSAGES)
    config.add_argument("--max-packet-size", type=int, default=DEFAULT_MAX_PACKET_SIZE)
    config.add_argument(
        "--crl-file",
        type=Path,
        help="the CRL the broker loads and reloads on SIGHUP (default: CONFIG_DIR/crl.pem)",
    )
    acl = actions.add_parser("acl", help="print the ACL file: gateways and the ingest worker identities")
    acl.add_argument(
        "--ingest-workers",
        type=int,
        default=MAX_INGEST_WORKERS,
        choices=range(1, MAX_INGEST_WORKERS + 1),
        metavar="N",
        help="how many ingest worker identities may read (default: %(default)s)",
    )


def run(args: argparse.Namespace) -> int:
    """Print the rendered configuration or ACL."""
    if args.broker_action == "acl":
        print(render_broker_acl(ingest_workers=args.ingest_workers), end="")  # noqa: T201
        return 0
    print(  # noqa: T201 - the command's output
        render_broker_config(
            config_dir=args.config_dir,
            data_dir=args.data_dir,
            port=args.port,
            bind_address=args.bind,
            max_queued_messages=args.max_queued_messages,
            max_packet_size=args.max_packet_size,
            crl_file=args.crl_file,
        ),
        end="",
    )
    return 0
