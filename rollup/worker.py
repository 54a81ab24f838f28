"""Roll up the hours the ingest marked as changed: hourly rows from readings, then their local days."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg

from rollup import queries
from thuis.db import Connection
from thuis.metrics import energy_metrics

log = logging.getLogger(__name__)

# Pending (device, hour) pairs per transaction. An ingest batch that marks an hour the worker has just taken
# waits for the worker's transaction, so batches stay short (about a tenth of a second at this size).
BATCH_HOURS = 500
# How long to wait for writers that were running while a batch was taken before rolling its hours up again
# anyway; a transaction that runs longer than this (a bulk load) is logged.
SETTLE_TIMEOUT_S = 60.0
SETTLE_POLL_S = 0.02


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


@dataclass
class Recheck:
    """Hours of committed batches still to be rolled up again, and the writers to wait for first.

    Their marks are gone with the batches that took them, so this is the only record that they are due: a
    serve loop keeps one across its runs, so that a run that fails (the connection lost while it waited
    for the writers) leaves them to the next run instead of losing them.
    """

    pairs: dict[tuple[int, dt.datetime], None] = field(default_factory=dict)  # insertion-ordered set
    writers: set[str] = field(default_factory=set)


async def roll_up_batch(conn: Connection, *, batch_hours: int = BATCH_HOURS) -> Batch:
    """Take up to `batch_hours` pending hours and recompute their hourly and daily rows, in one transaction.

    If anything fails before the commit, the pending rows come back with the rollback. The connection must
    not be in a transaction already.
    """
    metrics = list(energy_metrics())
    async with conn.transaction():
        await conn.execute(queries.LOCK_ROLLUP)
        await conn.execute(queries.NO_JIT)
        taken = await conn.fetch(queries.TAKE_PENDING_HOURS, batch_hours)
        if not taken:
            return Batch([], [], 0, 0, [])
        devices = [row[0] for row in taken]
        hours = [row[1] for row in taken]
        snapshot, own_xid = _row(await conn.fetchrow(queries.CURRENT_SNAPSHOT))
        hourly, daily = await _recompute(conn, devices=devices, hours=hours, metrics=metrics)
    next_xid = int(await conn.fetchval(queries.NEXT_TRANSACTION_ID))
    return Batch(devices, hours, hourly, daily, _writers_in_flight(snapshot, int(own_xid), next_xid))


def _writers_in_flight(snapshot: str, own_xid: int, next_xid: int) -> list[str]:
    """Return the transactions that may have been running at `snapshot` ("xmin:xmax:xip,...")."""
    _, xmax, running = snapshot.split(":")
    candidates = {int(xid) for xid in running.split(",") if xid} | set(range(int(xmax), next_xid))
    return [str(xid) for xid in sorted(candidates - {own_xid})]


async def recompute_hours(conn: Connection, *, devices: Sequence[int], hours: Sequence[dt.datetime]) -> int:
    """Recompute the hourly and daily rows of the given (device, hour) pairs without touching pending."""
    metrics = list(energy_metrics())
    async with conn.transaction():
        await conn.execute(queries.LOCK_ROLLUP)
        await conn.execute(queries.NO_JIT)
        hourly, _ = await _recompute(conn, devices=devices, hours=hours, metrics=metrics)
    return hourly


async def drain_pending(
    conn: Connection,
    *,
    batch_hours: int = BATCH_HOURS,
    settle_timeout_s: float = SETTLE_TIMEOUT_S,
    stopping: asyncio.Event | None = None,
    recheck: Recheck | None = None,
) -> RollupRun:
    """Roll up everything pending, batch by batch, then roll up again the hours writers may have missed.

    The ingest marks an hour with `ON CONFLICT DO NOTHING`: a writer that finds the hour already marked
    leaves no trace on the mark, so a batch that takes that mark while the writer is still running cannot see
    its readings. Every writer running when a batch was taken is therefore waited for (without holding any
    lock the ingest could wait on), and those batches' hours are recomputed once they have ended. Pass a
    `recheck` kept across runs to have the hours of a failed run rolled up again by the next one.
    """
    run = RollupRun()
    recheck = Recheck() if recheck is None else recheck
    started = time.perf_counter()
    while stopping is None or not stopping.is_set():
        batch = await roll_up_batch(conn, batch_hours=batch_hours)
        if not batch.devices:
            break
        run.batches += 1
        run.hours += len(batch.devices)
        run.hourly_rows += batch.hourly_rows
        run.daily_rows += batch.daily_rows
        if batch.writers_in_flight:
            recheck.pairs.update(dict.fromkeys(zip(batch.devices, batch.hours, strict=True)))
            recheck.writers.update(batch.writers_in_flight)
    if recheck.pairs:
        run.hours_rolled_up_again = await _roll_up_again(conn, recheck, batch_hours, settle_timeout_s)
    run.seconds = time.perf_counter() - started
    return run


async def _roll_up_again(conn: Connection, recheck: Recheck, batch_hours: int, timeout_s: float) -> int:
    """Wait for the writers, then recompute the hours to check; forget each chunk once it committed."""
    await _wait_for_writers(conn, sorted(recheck.writers), timeout_s=timeout_s)
    recheck.writers.clear()
    pairs = list(recheck.pairs)
    for start in range(0, len(pairs), batch_hours):
        chunk = pairs[start : start + batch_hours]
        await recompute_hours(
            conn, devices=[device for device, _ in chunk], hours=[hour for _, hour in chunk]
        )
        for pair in chunk:
            del recheck.pairs[pair]
    return len(pairs)


async def count_pending(conn: Connection) -> int:
    """Return how many (device, hour) pairs wait to be rolled up."""
    return int(await conn.fetchval(queries.COUNT_PENDING_HOURS))


async def _recompute(
    conn: Connection, *, devices: Sequence[int], hours: Sequence[dt.datetime], metrics: list[str]
) -> tuple[int, int]:
    arguments = (list(devices), list(hours), metrics)
    hourly = _rows_affected(await conn.execute(queries.UPSERT_HOURLY, *arguments))
    daily = _rows_affected(await conn.execute(queries.UPSERT_DAILY, *arguments))
    return hourly, daily


async def _wait_for_writers(conn: Connection, xids: list[str], *, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while await conn.fetchval(queries.WRITERS_STILL_RUNNING, xids):
        if time.monotonic() > deadline:
            log.warning(
                "rollup: writers still running after %.0f s; rolling their hours up again now", timeout_s
            )
            return
        await asyncio.sleep(SETTLE_POLL_S)


def _rows_affected(status: str) -> int:
    """Return the row count of a command tag such as "INSERT 0 12"."""
    return int(status.rsplit(" ", 1)[1])


def _row(row: asyncpg.Record | None) -> asyncpg.Record:
    if row is None:
        raise RuntimeError("the statement returned no row")
    return row
