"""Roll up the hours the ingest marked as changed: hourly rows from readings, then their local days."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from rollup import queries
from thuis.metrics import energy_metrics

log = logging.getLogger(__name__)

# Pending (device, hour) pairs per transaction. An ingest batch that marks an hour the worker has just taken
# waits for the worker's transaction, so batches stay short (about a tenth of a second at this size).
BATCH_HOURS = 500
# How long to wait for writers that were running while a batch was taken before rolling its hours up again
# anyway; a transaction that runs longer than this (a bulk load) is logged.
SETTLE_TIMEOUT_S = 60.0
SETTLE_POLL_S = 0.02

Connection = psycopg.Connection[Any]


@dataclass(frozen=True, slots=True)
class Batch:
    """One transaction's work: the pairs taken, the rows written, the writers that were still running."""

    devices: list[int]
    hours: list[dt.datetime]
    hourly_rows: int
    daily_rows: int
    writers_in_flight: list[str]


@dataclass
class RollupRun:
    """What draining the pending hours once did."""

    hours: int = 0
    hourly_rows: int = 0
    daily_rows: int = 0
    batches: int = 0
    hours_rolled_up_again: int = 0
    seconds: float = 0.0


def roll_up_batch(conn: Connection, *, batch_hours: int = BATCH_HOURS) -> Batch:
    """Take up to `batch_hours` pending hours and recompute their hourly and daily rows, in one transaction.

    If anything fails before the commit, the pending rows come back with the rollback. The connection must
    be in autocommit mode.
    """
    metrics = list(energy_metrics())
    with conn.transaction():
        conn.execute(queries.LOCK_ROLLUP)
        conn.execute(queries.NO_JIT)
        taken = conn.execute(queries.TAKE_PENDING_HOURS, {"batch_hours": batch_hours}).fetchall()
        if not taken:
            return Batch([], [], 0, 0, [])
        devices = [row[0] for row in taken]
        hours = [row[1] for row in taken]
        snapshot, own_xid = _row(conn.execute(queries.CURRENT_SNAPSHOT).fetchone())
        hourly, daily = _recompute(conn, devices=devices, hours=hours, metrics=metrics)
    next_xid = int(_row(conn.execute(queries.NEXT_TRANSACTION_ID).fetchone())[0])
    return Batch(devices, hours, hourly, daily, _writers_in_flight(snapshot, int(own_xid), next_xid))


def _writers_in_flight(snapshot: str, own_xid: int, next_xid: int) -> list[str]:
    """Return the transactions that may have been running at `snapshot` ("xmin:xmax:xip,...")."""
    _, xmax, running = snapshot.split(":")
    candidates = {int(xid) for xid in running.split(",") if xid} | set(range(int(xmax), next_xid))
    return [str(xid) for xid in sorted(candidates - {own_xid})]


def recompute_hours(conn: Connection, *, devices: Sequence[int], hours: Sequence[dt.datetime]) -> int:
    """Recompute the hourly and daily rows of the given (device, hour) pairs without touching pending."""
    metrics = list(energy_metrics())
    with conn.transaction():
        conn.execute(queries.LOCK_ROLLUP)
        conn.execute(queries.NO_JIT)
        hourly, _ = _recompute(conn, devices=devices, hours=hours, metrics=metrics)
    return hourly


def drain_pending(
    conn: Connection,
    *,
    batch_hours: int = BATCH_HOURS,
    settle_timeout_s: float = SETTLE_TIMEOUT_S,
    stopping: threading.Event | None = None,
) -> RollupRun:
    """Roll up everything pending, batch by batch, then roll up again the hours writers may have missed.

    The ingest marks an hour with `ON CONFLICT DO NOTHING`: a writer that finds the hour already marked
    leaves no trace on the mark, so a batch that takes that mark while the writer is still running cannot see
    its readings. Every writer running when a batch was taken is therefore waited for (without holding any
    lock the ingest could wait on), and those batches' hours are recomputed once they have ended.
    """
    run = RollupRun()
    recheck: dict[tuple[int, dt.datetime], None] = {}  # insertion-ordered set
    writers: set[str] = set()
    started = time.perf_counter()
    while stopping is None or not stopping.is_set():
        batch = roll_up_batch(conn, batch_hours=batch_hours)
        if not batch.devices:
            break
        run.batches += 1
        run.hours += len(batch.devices)
        run.hourly_rows += batch.hourly_rows
        run.daily_rows += batch.daily_rows
        if batch.writers_in_flight:
            recheck.update(dict.fromkeys(zip(batch.devices, batch.hours, strict=True)))
            writers.update(batch.writers_in_flight)
    if recheck:
        _wait_for_writers(conn, sorted(writers), timeout_s=settle_timeout_s)
        pairs = list(recheck)
        for start in range(0, len(pairs), batch_hours):
            chunk = pairs[start : start + batch_hours]
            recompute_hours(conn, devices=[device for device, _ in chunk], hours=[hour for _, hour in chunk])
        run.hours_rolled_up_again = len(pairs)
    run.seconds = time.perf_counter() - started
    return run


def count_pending(conn: Connection) -> int:
    """Return how many (device, hour) pairs wait to be rolled up."""
    return int(_scalar(conn.execute(queries.COUNT_PENDING_HOURS).fetchone()))


def _recompute(
    conn: Connection, *, devices: Sequence[int], hours: Sequence[dt.datetime], metrics: list[str]
) -> tuple[int, int]:
    params = {"devices": list(devices), "hours": list(hours), "metrics": metrics}
    hourly = conn.execute(queries.UPSERT_HOURLY, params).rowcount
    daily = conn.execute(queries.UPSERT_DAILY, params).rowcount
    return hourly, daily


def _wait_for_writers(conn: Connection, xids: list[str], *, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while _scalar(conn.execute(queries.WRITERS_STILL_RUNNING, {"xids": xids}).fetchone()):
        if time.monotonic() > deadline:
            log.warning(
                "rollup: writers still running after %.0f s; rolling their hours up again now", timeout_s
            )
            return
        time.sleep(SETTLE_POLL_S)


def _row(row: tuple[Any, ...] | None) -> tuple[Any, ...]:
    if row is None:
        raise RuntimeError("the statement returned no row")
    return row


def _scalar(row: tuple[Any, ...] | None) -> Any:
    return _row(row)[0]
