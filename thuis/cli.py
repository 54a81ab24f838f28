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


def _commands() -> dict[str, tuple[str, Callable[[], CommandModule]]]:
    # Imported lazily, so `thuis certs` does not pay for importing the ingest.
    def lazy(module: str) -> Callable[[], CommandModule]:
        def load() -> CommandModule:
            imported: CommandModule = __import__(module, fromlist=["run"])
            return imported

        return load

    return {
        "certs": (
            "create the CA and certificates for the broker, the ingest and gateways",
            lazy("thuis.commands.certs"),
        ),
        "broker": ("render the Mosquitto configuration", lazy("thuis.commands.broker")),
        "migrate": ("apply pending database migrations", lazy("thuis.commands.migrate")),
        "db": ("database administration: service role passwords", lazy("thuis.commands.db")),
        "gateway": ("register sites and gateways", lazy("thuis.commands.gateway")),
        "ingest": ("run the MQTT to TimescaleDB ingest service", lazy("ingest.cli")),
        "sim": ("run simulated BeNext gateways and Maxem meters", lazy("gateway_sim.cli")),
        "retention": ("the data catalogue and its retention policies", lazy("thuis.commands.retention")),
        "rollup": ("keep the hourly and daily energy rollups up to date", lazy("thuis.commands.rollup")),
        "api": ("serve the portal (FastAPI)", lazy("api.cli")),
        "export": (
            "make a research export: per-household series or aggregates over at least k households",
            lazy("thuis.commands.export"),
        ),
        "users": ("create portal accounts and give sites their owner", lazy("thuis.commands.users")),
        "keys": ("the keyring of personal data: master keys and rotation", lazy("thuis.commands.keys")),
        "stack": ("run the whole stack locally under .thuis/", lazy("thuis.commands.stack")),
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
    for name, (help_text, _) in _commands().items():
        by_name[name] = subparsers.add_parser(name, help=help_text, description=help_text)
    return parser, by_name


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the subcommand."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, subparsers = build_parser()
    loaders = {name: load for name, (_, load) in _commands().items()}
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
