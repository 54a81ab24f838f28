"""`thuis retention`: the data catalogue, checked against the database, and the privacy document."""

from __future__ import annotations

import argparse
import os
import sys

import psycopg

from retention.catalogue import CatalogueError, check_schema, load_catalogue
from retention.docs import PRIVACY_DOC, render_privacy_doc


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add `check` and `docs`."""
    actions = parser.add_subparsers(dest="retention_action", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check", help="refuse a catalogue or database where a table belongs to no data category"
    )
    check.add_argument("--database-url", help="postgresql:// URL (default: THUIS_DATABASE_URL)")
    docs = actions.add_parser("docs", help="print docs/privacy.md as generated from the catalogue")
    docs.add_argument("--write", action="store_true", help="write it to docs/privacy.md instead")


def run(args: argparse.Namespace) -> int:
    """Check, or render the document."""
    try:
        catalogue = load_catalogue()
        if args.retention_action == "docs":
            text = render_privacy_doc(catalogue)
            if args.write:
                PRIVACY_DOC.write_text(text)
            else:
                print(text, end="")  # noqa: T201 - the command's output
            return 0
        url = args.database_url or os.environ.get("THUIS_DATABASE_URL")
        if not url:
            print("thuis retention: set THUIS_DATABASE_URL or pass --database-url", file=sys.stderr)  # noqa: T201
            return 2
        with psycopg.connect(url) as conn:
            check_schema(conn, catalogue)
    except CatalogueError as err:
        print(f"thuis retention: {err}", file=sys.stderr)  # noqa: T201
        return 1
    print(f"the catalogue covers every table: {len(catalogue.categories)} categories")  # noqa: T201
    return 0
