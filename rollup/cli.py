"""`thuis rollup`: keep the hourly and daily energy rollups up to date from the hours the ingest marked."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

import psycopg

from rollup.worker import BATCH_HOURS, count_pending, drain_pending

log = logging.getLogger(__name__)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add `run` and `serve`."""
    actions = parser.add_subparsers(dest="rollup_action", metavar="ACTION", required=True)
    run_ = actions.add_parser("run", help="roll up every pending hour once, then exit")
    serve = actions.add_parser("serve", help="roll up pending hours on a schedule until SIGTERM")
    serve.add_argument(
        "--interval-s", type=float, default=5.0, help="seconds between runs (default: %(default)s)"
    )
    for action in (run_, serve):
        action.add_argument(
            "--database-url", help="postgresql:// URL of the thuis_rollup role (default: THUIS_DATABASE_URL)"
        )
        action.add_argument(
            "--batch-hours",
            type=int,
            default=BATCH_HOURS,
            help="(device, hour) pairs per transaction (default: %(default)s)",
        )


def run(args: argparse.Namespace) -> int:
    """Run once or serve; exit 2 without a database URL."""
    url = args.database_url or os.environ.get("THUIS_DATABASE_URL")
    if not url:
        print("thuis rollup: set THUIS_DATABASE_URL or pass --database-url", file=sys.stderr)  # noqa: T201
        return 2
    if args.rollup_action == "run":
        with psycopg.connect(url, autocommit=True) as conn:
            result = drain_pending(conn, batch_hours=args.batch_hours)
            print(  # noqa: T201 - the command's output
                f"rolled up {result.hours} hours in {result.batches} batches: {result.hourly_rows} hourly "
                f"and {result.daily_rows} daily rows in {result.seconds:.2f} s "
                f"({result.hours_rolled_up_again} hours again after writers in flight); "
                f"{count_pending(conn)} pending"
            )
        return 0
    return _serve(url, interval_s=args.interval_s, batch_hours=args.batch_hours)


def _serve(url: str, *, interval_s: float, batch_hours: int) -> int:
    """Drain now and then every interval; a failed run is logged and tried again at the next turn."""
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    log.info("rollup: running every %.1f s", interval_s)
    conn: psycopg.Connection[tuple[object, ...]] | None = None
    try:
        while not stopping.is_set():
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(url, autocommit=True)
                result = drain_pending(conn, batch_hours=batch_hours, stopping=stopping)
                if result.hours:
                    log.info(
                        "rollup: %d hours, %d hourly and %d daily rows in %.2f s",
                        result.hours,
                        result.hourly_rows,
                        result.daily_rows,
                        result.seconds,
                    )
            except psycopg.Error as err:
                log.warning("rollup run failed (%s); trying again in %.1f s", err, interval_s)
                if conn is not None:
                    conn.close()
                conn = None
            stopping.wait(interval_s)
    finally:
        if conn is not None:
            conn.close()
    log.info("rollup: stopped")
    return 0
