"""`thuis erasures`: the erasure ledger against a database; erase again what a restored backup brought back.

After restoring a database from a backup, run `thuis erasures reapply` (as the schema owner) before any
service starts: every service refuses a database that lacks an erasure of the ledger (privacy/keys/ledger.py).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from cli.settings import CommandError, database_url, ledger_path
from privacy.keys.ledger import ErasureLedger, ErasuresNotApplied, LedgerError, require_erasures_applied
from privacy.subjects.erasure import reapply_erasures
from thuis.db import connection


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add `status` and `reapply`."""
    actions = parser.add_subparsers(dest="erasures_action", metavar="ACTION", required=True)
    status = actions.add_parser("status", help="say whether the database holds every erasure of the ledger")
    reapply = actions.add_parser(
        "reapply", help="erase again every subject of the ledger the database still holds (after a restore)"
    )
    for action in (status, reapply):
        action.add_argument("--ledger", type=Path, help="the ledger (default: THUIS_ERASURE_LEDGER_FILE)")
        action.add_argument(
            "--database-url", help="postgresql:// URL of the schema owner (default: THUIS_DATABASE_URL)"
        )


def run(args: argparse.Namespace) -> int:
    """Report or re-apply; exit 1 when the database and the ledger disagree, 2 when a setting is missing."""
    try:
        url = database_url(args)
        ledger = ErasureLedger(ledger_path(args))
    except CommandError as err:
        print(f"thuis erasures: {err}", file=sys.stderr)  # noqa: T201
        return 2
    try:
        if args.erasures_action == "reapply":
            asyncio.run(_reapply(url, ledger))
        else:
            asyncio.run(_status(url, ledger))
    except (ErasuresNotApplied, LedgerError) as err:
        print(f"thuis erasures: {err}", file=sys.stderr)  # noqa: T201
        return 1
    return 0


async def _reapply(url: str, ledger: ErasureLedger) -> None:
    async with connection(url, application_name="thuis erasures") as conn:
        done = await reapply_erasures(conn, ledger)
        for item in done:
            print(  # noqa: T201 - the command's output: ids and moments only
                f"{item.entry.entry_id}\taccount {item.entry.subject_user_id}\t"
                f"erased {item.entry.erased_at:%Y-%m-%d %H:%M}\t{item.outcome}"
            )
        await require_erasures_applied(conn, ledger)
    print(f"{len(done)} erasures applied again; the database holds every erasure of {ledger.path}")  # noqa: T201


async def _status(url: str, ledger: ErasureLedger) -> None:
    async with connection(url, application_name="thuis erasures") as conn:
        await require_erasures_applied(conn, ledger)
    print(f"the database holds all {len(ledger.entries())} erasures of {ledger.path}")  # noqa: T201
