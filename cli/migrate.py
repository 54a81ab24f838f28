"""`thuis migrate`: apply pending migrations to the database of THUIS_DATABASE_URL."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from cli.settings import CommandError, database_url
from ops.migrate import MigrationError, migrate
from thuis.catalogue import CatalogueError, check_schema, load_catalogue
from thuis.db import connection

log = logging.getLogger(__name__)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the optional database URL."""
    parser.add_argument(
        "--database-url",
        default=None,
        help="postgresql:// URL of a role that owns the schema (default: THUIS_DATABASE_URL)",
    )


def run(args: argparse.Namespace) -> int:
    """Apply what is pending, say what was done, and refuse a schema the data catalogue does not cover."""
    try:
        url = database_url(args)
    except CommandError as err:
        print(f"thuis migrate: {err}", file=sys.stderr)  # noqa: T201
        return 2
    try:
        applied = migrate(url)
    except MigrationError as err:
        print(f"thuis migrate: {err}", file=sys.stderr)  # noqa: T201
        return 1
    if applied:
        log.info("applied %s", ", ".join(f"{m.version:04d}_{m.name}" for m in applied))
    else:
        log.info("the database is up to date")
    try:
        asyncio.run(_check_schema(url))
    except CatalogueError as err:
        print(f"thuis migrate: {err}", file=sys.stderr)  # noqa: T201
        return 1
    return 0


async def _check_schema(url: str) -> None:
    """Hold the migrated schema against the data catalogue."""
    async with connection(url, application_name="thuis-migrate") as conn:
        await check_schema(conn, load_catalogue())
