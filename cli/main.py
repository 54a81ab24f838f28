"""The `thuis` command line: one console script with a subcommand per job."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Protocol

from thuis import __version__


class CommandModule(Protocol):
    """What a subcommand's module provides: its arguments and how it runs."""

    def configure_parser(self, parser: argparse.ArgumentParser) -> None:
        """Add the subcommand's arguments."""

    def run(self, args: argparse.Namespace) -> int:
        """Run the subcommand and return the exit status."""


# ruff: noqa: PLC0415 - imports inside the loaders are the point: each runs only for its subcommand.


# Each subcommand's module is imported only when it runs, so `thuis certs` does not pay for importing the
# portal; the imports are written out, so that tools (and tests/test_layers.py) see every dependency.
def _certs() -> CommandModule:
    from cli import certs

    return certs


def _broker() -> CommandModule:
    from cli import broker

    return broker


def _migrate() -> CommandModule:
    from cli import migrate

    return migrate


def _db() -> CommandModule:
    from cli import db

    return db


def _gateway() -> CommandModule:
    from cli import gateway

    return gateway


def _ingest() -> CommandModule:
    from ingest import cli

    return cli


def _sim() -> CommandModule:
    from cli import sim

    return sim


def _retention() -> CommandModule:
    from retention import cli

    return cli


def _rollup() -> CommandModule:
    from rollup import cli

    return cli


def _api() -> CommandModule:
    from api import cli

    return cli


def _export() -> CommandModule:
    from cli import export

    return export


def _users() -> CommandModule:
    from cli import users

    return users


def _keys() -> CommandModule:
    from cli import keys

    return keys


def _erasures() -> CommandModule:
    from cli import erasures

    return erasures


def _stack() -> CommandModule:
    from cli import stack

    return stack


COMMANDS: dict[str, tuple[str, Callable[[], CommandModule]]] = {
    "certs": ("the CA: certificates of the broker, the ingest and gateways, and revoking them", _certs),
    "broker": ("render the Mosquitto configuration", _broker),
    "migrate": ("apply pending database migrations", _migrate),
    "db": ("database administration: service role passwords", _db),
    "gateway": ("register sites and gateways", _gateway),
    "ingest": ("run the MQTT to TimescaleDB ingest service", _ingest),
    "sim": ("run simulated BeNext gateways and Maxem meters", _sim),
    "retention": ("the data catalogue and its retention policies", _retention),
    "rollup": ("keep the hourly and daily energy rollups up to date", _rollup),
    "api": ("serve the portal (FastAPI)", _api),
    "export": (
        "make a research export: per-household series or aggregates over at least k households",
        _export,
    ),
    "users": ("create portal accounts and give sites their owner", _users),
    "keys": ("the keyring of personal data: master keys and rotation", _keys),
    "erasures": ("the erasure ledger: check a database against it, erase again after a restore", _erasures),
    "stack": ("run the whole stack locally under .thuis/", _stack),
}


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """Build the top-level parser; return it with each subcommand's (still empty) parser."""
    parser = argparse.ArgumentParser(
        prog="thuis", description="Thuis: smart-home telemetry ingestion with privacy by design."
    )
    parser.add_argument("--version", action="version", version=f"thuis {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    by_name: dict[str, argparse.ArgumentParser] = {}
    for name, (help_text, _) in COMMANDS.items():
        by_name[name] = subparsers.add_parser(name, help=help_text, description=help_text)
    return parser, by_name


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the subcommand."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, subparsers = build_parser()
    loaders = {name: load for name, (_, load) in COMMANDS.items()}
    # Only the chosen subcommand's module is imported, and it adds its arguments before the full parse.
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    if command in loaders:
        loaders[command]().configure_parser(subparsers[command])
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    module = loaders[args.command]()
    return module.run(args)


if __name__ == "__main__":
    sys.exit(main())
