"""`thuis rollup`: keep the hourly and daily energy rollups up to date from the hours the ingest marked."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from functools import partial

import asyncpg

from privacy.keys.ledger import ErasureLedger, ErasuresNotApplied, LedgerError, require_erasures_applied
from rollup.settings import RollupSettings
from rollup.worker import Recheck, count_pending, drain_pending
from thuis.backoff import DATABASE_ERRORS, serve_with_reconnect, stop_on_signals
from thuis.db import connect
from thuis.settings import SettingsError

log = logging.getLogger(__name__)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add `run` and `serve`."""
    parser.epilog = (
        "Configured by environment variables: THUIS_DATABASE_URL (required), THUIS_ROLLUP_INTERVAL_S, "
        "THUIS_ROLLUP_BATCH_HOURS, THUIS_RECONNECT_INITIAL_S, THUIS_RECONNECT_MAX_S, "
        "THUIS_RECONNECT_MULTIPLIER; the options below override them."
    )
    actions = parser.add_subparsers(dest="rollup_action", metavar="ACTION", required=True)
    run_ = actions.add_parser("run", help="roll up every pending hour once, then exit")
    serve = actions.add_parser("serve", help="roll up pending hours on a schedule until SIGTERM")
    serve.add_argument(
        "--interval-s", type=float, help="seconds between runs (default: THUIS_ROLLUP_INTERVAL_S)"
    )
    for action in (run_, serve):
        action.add_argument(
            "--database-url", help="postgresql:// URL of the thuis_rollup role (default: THUIS_DATABASE_URL)"
        )
        action.add_argument(
            "--batch-hours",
            type=int,
            help="(device, hour) pairs per transaction (default: THUIS_ROLLUP_BATCH_HOURS)",
        )


def run(args: argparse.Namespace) -> int:
    """Run once or serve; exit 2 when the settings are refused, 1 when the database fails a single run."""
    try:
        settings = RollupSettings.load(
            database_url=args.database_url,
            rollup_batch_hours=args.batch_hours,
            rollup_interval_s=getattr(args, "interval_s", None),
        )
    except SettingsError as err:
        print(f"thuis rollup: {err}", file=sys.stderr)  # noqa: T201
        return 2
    try:
        if args.rollup_action == "serve":
            asyncio.run(_serve(settings))
        else:
            asyncio.run(_run_once(settings))
    except DATABASE_ERRORS as err:
        print(f"thuis rollup: the database failed: {err}", file=sys.stderr)  # noqa: T201
        return 1
    except (ErasuresNotApplied, LedgerError) as err:
        print(f"thuis rollup: {err}", file=sys.stderr)  # noqa: T201
        return 1
    return 0


async def _run_once(settings: RollupSettings) -> None:
    conn = await connect(settings.database_url.get_secret_value(), application_name="thuis rollup")
    try:
        await require_erasures_applied(conn, ErasureLedger(settings.erasure_ledger_file))
        result = await drain_pending(conn, batch_hours=settings.rollup_batch_hours)
        print(  # noqa: T201 - the command's output
            f"rolled up {result.hours} hours in {result.batches} batches: {result.hourly_rows} hourly "
            f"and {result.daily_rows} daily rows in {result.seconds:.2f} s "
            f"({result.hours_rolled_up_again} hours again after writers in flight); "
            f"{await count_pending(conn)} pending"
        )
    finally:
        await conn.close()


async def _serve(settings: RollupSettings) -> None:
    """Drain now and then every interval; a failed run is retried under the reconnect policy."""
    stopping = stop_on_signals()
    # Hours of committed batches still to be rolled up again outlive a failed run (see Recheck).
    recheck = Recheck()

    async def drain(conn: asyncpg.Connection) -> None:
        result = await drain_pending(
            conn, batch_hours=settings.rollup_batch_hours, stopping=stopping, recheck=recheck
        )
        if result.hours or result.hours_rolled_up_again:
            log.info(
                "rollup: %d hours, %d hourly and %d daily rows in %.2f s (%d hours again)",
                result.hours,
                result.hourly_rows,
                result.daily_rows,
                result.seconds,
                result.hours_rolled_up_again,
            )

    log.info("rollup: running every %.1f s", settings.rollup_interval_s)
    await serve_with_reconnect(
        drain,
        settings=settings,
        interval_s=settings.rollup_interval_s,
        stopping=stopping,
        name="rollup",
        on_connect=partial(require_erasures_applied, ledger=ErasureLedger(settings.erasure_ledger_file)),
    )
