"""`thuis retention`: apply the retention policies, check the catalogue, generate the privacy document."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

import psycopg

from retention.docs import PRIVACY_DOC, render_privacy_doc
from retention.report import build_report, render_report
from retention.worker import run_retention
from thuis.catalogue import Catalogue, CatalogueError, check_schema, load_catalogue

log = logging.getLogger(__name__)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add `run`, `serve`, `report`, `check` and `docs`."""
    actions = parser.add_subparsers(dest="retention_action", metavar="ACTION", required=True)
    run_ = actions.add_parser("run", help="apply every retention policy once and record what was removed")
    run_.add_argument(
        "--database-url", help="postgresql:// URL of thuis_retention (default: THUIS_DATABASE_URL)"
    )
    run_.add_argument("--dry-run", action="store_true", help="say what would be removed; change nothing")
    run_.add_argument(
        "--now", type=_timestamp, help="the clock to count periods back from (ISO 8601; default: now)"
    )
    serve = actions.add_parser("serve", help="apply the policies on a schedule until SIGTERM")
    serve.add_argument("--database-url", help="URL of the thuis_retention role (default: THUIS_DATABASE_URL)")
    serve.add_argument(
        "--interval-s", type=float, default=3600.0, help="seconds between runs (default: %(default)s)"
    )
    report = actions.add_parser(
        "report", help="per category: kept how long, legal basis, oldest record held, the last runs"
    )
    report.add_argument("--database-url", help="postgresql:// URL (default: THUIS_DATABASE_URL)")
    check = actions.add_parser(
        "check", help="refuse a catalogue or database where a table belongs to no data category"
    )
    check.add_argument("--database-url", help="postgresql:// URL (default: THUIS_DATABASE_URL)")
    docs = actions.add_parser("docs", help="print docs/privacy.md as generated from the catalogue")
    docs.add_argument("--write", action="store_true", help="write it to docs/privacy.md instead")


def run(args: argparse.Namespace) -> int:
    """Do what was asked; a catalogue or database the catalogue does not cover is refused (exit 1)."""
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
            check_schema(conn, catalogue)
            return _ACTIONS[args.retention_action](conn, catalogue, args)
    except CatalogueError as err:
        print(f"thuis retention: {err}", file=sys.stderr)  # noqa: T201
        return 1


def _run_once(conn: psycopg.Connection[Any], catalogue: Catalogue, args: argparse.Namespace) -> int:
    now = args.now or dt.datetime.now(dt.UTC)
    for removal in run_retention(conn, catalogue, now=now, dry_run=args.dry_run):
        print(  # noqa: T201 - the command's output
            f"{removal.category}\t{removal.table}\tcutoff {removal.cutoff.isoformat()}\t"
            f"{removal.method}\t{removal.chunks} chunks\t{removal.rows} rows\t"
            f"{'would be removed' if args.dry_run else 'removed'}\t{removal.seconds:.2f} s"
        )
    return 0


def _report(conn: psycopg.Connection[Any], catalogue: Catalogue, args: argparse.Namespace) -> int:
    print(render_report(build_report(conn, catalogue), now=dt.datetime.now(dt.UTC)), end="")  # noqa: T201
    return 0


def _check(conn: psycopg.Connection[Any], catalogue: Catalogue, args: argparse.Namespace) -> int:
    print(f"the catalogue covers every table: {len(catalogue.categories)} categories")  # noqa: T201
    return 0


def _serve(conn: psycopg.Connection[Any], catalogue: Catalogue, args: argparse.Namespace) -> int:
    """Run now and then every interval; a failed run is logged and tried again at the next turn."""
    interval_s: float = args.interval_s
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    log.info("retention: running every %.0f s", interval_s)
    while not stopping.is_set():
        try:
            removals = run_retention(conn, catalogue, now=dt.datetime.now(dt.UTC))
            log.info("retention: %d rows removed", sum(removal.rows for removal in removals))
        except psycopg.Error as err:
            log.warning("retention run failed (%s); trying again in %.0f s", err, interval_s)
        stopping.wait(interval_s)
    return 0


_ACTIONS: dict[str, Callable[[psycopg.Connection[Any], Catalogue, argparse.Namespace], int]] = {
    "run": _run_once,
    "serve": _serve,
    "report": _report,
    "check": _check,
}


def _timestamp(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
