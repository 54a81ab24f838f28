"""`thuis retention`: apply the retention policies, check the catalogue, generate the privacy document."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys

import psycopg

from retention.catalogue import CatalogueError, check_schema, load_catalogue
from retention.docs import PRIVACY_DOC, render_privacy_doc
from retention.worker import run_retention


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add `run`, `check` and `docs`."""
    actions = parser.add_subparsers(dest="retention_action", metavar="ACTION", required=True)
    run_ = actions.add_parser("run", help="apply every retention policy once and record what was removed")
    run_.add_argument(
        "--database-url", help="postgresql:// URL of thuis_retention (default: THUIS_DATABASE_URL)"
    )
    run_.add_argument("--dry-run", action="store_true", help="say what would be removed; change nothing")
    run_.add_argument(
        "--now", type=_timestamp, help="the clock to count periods back from (ISO 8601; default: now)"
    )
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
        with psycopg.connect(url, autocommit=True) as conn:
            if args.retention_action == "run":
                now = args.now or dt.datetime.now(dt.UTC)
                for removal in run_retention(conn, catalogue, now=now, dry_run=args.dry_run):
                    print(  # noqa: T201 - the command's output
                        f"{removal.category}\t{removal.table}\tcutoff {removal.cutoff.isoformat()}\t"
                        f"{removal.method}\t{removal.chunks} chunks\t{removal.rows} rows\t"
                        f"{'would be removed' if args.dry_run else 'removed'}\t{removal.seconds:.2f} s"
                    )
                return 0
            check_schema(conn, catalogue)
    except CatalogueError as err:
        print(f"thuis retention: {err}", file=sys.stderr)  # noqa: T201
        return 1
    print(f"the catalogue covers every table: {len(catalogue.categories)} categories")  # noqa: T201
    return 0


def _timestamp(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
