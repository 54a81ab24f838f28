"""`thuis retention`: apply the retention policies, check the catalogue, generate the privacy document."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import sys
from collections.abc import Awaitable, Callable
from functools import partial

import asyncpg

from privacy.keys.ledger import ErasureLedger, ErasuresNotApplied, LedgerError, require_erasures_applied
from retention.docs import PRIVACY_DOC, render_privacy_doc
from retention.report import build_report, render_report
from retention.settings import RetentionSettings
from retention.worker import run_retention
from thuis.backoff import DATABASE_ERRORS, serve_with_reconnect, stop_on_signals
from thuis.catalogue import Catalogue, CatalogueError, check_schema, load_catalogue
from thuis.db import Connection, connect
from thuis.settings import SettingsError

log = logging.getLogger(__name__)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add `run`, `serve`, `report`, `check` and `docs`."""
    parser.epilog = (
        "Configured by environment variables: THUIS_DATABASE_URL (required but for `docs`), "
        "THUIS_RETENTION_INTERVAL_S, THUIS_RECONNECT_INITIAL_S, THUIS_RECONNECT_MAX_S, "
        "THUIS_RECONNECT_MULTIPLIER; the options below override them."
    )
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
        "--interval-s", type=float, help="seconds between runs (default: THUIS_RETENTION_INTERVAL_S or 3600)"
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
    """Do what was asked: exit 2 when the settings are refused, 1 for a catalogue or database refused."""
    try:
        catalogue = load_catalogue()
        if args.retention_action == "docs":
            return _docs(catalogue, write=args.write)
        settings = RetentionSettings.load(
            database_url=args.database_url, retention_interval_s=getattr(args, "interval_s", None)
        )
        if args.retention_action == "serve":
            asyncio.run(_serve(settings, catalogue))
        else:
            asyncio.run(_once(settings, catalogue, args))
    except SettingsError as err:
        print(f"thuis retention: {err}", file=sys.stderr)  # noqa: T201
        return 2
    except (CatalogueError, ErasuresNotApplied, LedgerError) as err:
        print(f"thuis retention: {err}", file=sys.stderr)  # noqa: T201
        return 1
    except DATABASE_ERRORS as err:
        print(f"thuis retention: the database failed: {err}", file=sys.stderr)  # noqa: T201
        return 1
    return 0


def _docs(catalogue: Catalogue, *, write: bool) -> int:
    text = render_privacy_doc(catalogue)
    if write:
        PRIVACY_DOC.write_text(text)
    else:
        print(text, end="")  # noqa: T201 - the command's output
    return 0


async def _once(settings: RetentionSettings, catalogue: Catalogue, args: argparse.Namespace) -> None:
    """Run `run`, `report` or `check` on one connection, once the database passed the catalogue's check."""
    conn = await connect(settings.database_url.get_secret_value(), application_name="thuis retention")
    try:
        await require_erasures_applied(conn, ErasureLedger(settings.erasure_ledger_file))
        await check_schema(conn, catalogue)
        await _ACTIONS[args.retention_action](conn, catalogue, args)
    finally:
        await conn.close()


async def _run_once(conn: Connection, catalogue: Catalogue, args: argparse.Namespace) -> None:
    now = args.now or dt.datetime.now(dt.UTC)
    for removal in await run_retention(conn, catalogue, now=now, dry_run=args.dry_run):
        print(  # noqa: T201 - the command's output
            f"{removal.category}\t{removal.table}\tcutoff {removal.cutoff.isoformat()}\t"
            f"{removal.method}\t{removal.chunks} chunks\t{removal.rows} rows\t"
            f"{'would be removed' if args.dry_run else 'removed'}\t{removal.seconds:.2f} s"
        )


async def _report(conn: Connection, catalogue: Catalogue, args: argparse.Namespace) -> None:
    report = await build_report(conn, catalogue)
    print(render_report(report, now=dt.datetime.now(dt.UTC)), end="")  # noqa: T201


async def _check(conn: Connection, catalogue: Catalogue, args: argparse.Namespace) -> None:
    print(f"the catalogue covers every table: {len(catalogue.categories)} categories")  # noqa: T201


_ACTIONS: dict[str, Callable[[Connection, Catalogue, argparse.Namespace], Awaitable[None]]] = {
    "run": _run_once,
    "report": _report,
    "check": _check,
}


async def _serve(settings: RetentionSettings, catalogue: Catalogue) -> None:
    """Run now and then every interval; a failed run is retried under the reconnect policy.

    A database the catalogue does not cover (CatalogueError) is no failure to retry: it ends the serve loop.
    """
    stopping = stop_on_signals()

    async def apply_policies(conn: asyncpg.Connection) -> None:
        removals = await run_retention(conn, catalogue, now=dt.datetime.now(dt.UTC), stopping=stopping)
        log.info("retention: %d rows removed", sum(removal.rows for removal in removals))

    log.info("retention: running every %.0f s", settings.retention_interval_s)
    await serve_with_reconnect(
        apply_policies,
        settings=settings,
        interval_s=settings.retention_interval_s,
        stopping=stopping,
        name="retention",
        on_connect=partial(require_erasures_applied, ledger=ErasureLedger(settings.erasure_ledger_file)),
    )


def _timestamp(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
