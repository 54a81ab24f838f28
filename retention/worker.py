"""Apply every retention policy once: drop expired chunks of hypertables, delete expired rows in batches."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from dataclasses import dataclass

import asyncpg

from retention import queries
from thuis.catalogue import Catalogue, Category, Schema, check_schema
from thuis.db import Connection

log = logging.getLogger(__name__)

DELETE_BATCH_ROWS = 5000


@dataclass(frozen=True)
class Removal:
    """What one policy removed (or, in a dry run, would remove) from one table."""

    category: str
    table: str
    method: str  # "drop_chunks" or "delete"
    cutoff: dt.datetime
    chunks: int
    rows: int
    seconds: float


def cutoff_for(category: Category, table_is_hypertable: bool, now: dt.datetime) -> dt.datetime:
    """Records older than the cutoff expire.

    Hypertables lose whole chunks, so their cutoff is the start of the day (UTC) the period reaches back
    to: their chunks are one day long and start at midnight UTC, so a chunk holds one calendar day and
    retention is exact to the day. Row-level deletes take the exact moment.
    """
    if category.keep is None:
        raise ValueError(f"category {category.id} is kept indefinitely")
    cutoff = category.keep.before(now)
    if table_is_hypertable:
        cutoff = cutoff.replace(hour=0, minute=0, second=0, microsecond=0)
    return cutoff


async def run_retention(
    conn: Connection,
    catalogue: Catalogue,
    *,
    now: dt.datetime,
    dry_run: bool = False,
    stopping: asyncio.Event | None = None,
) -> list[Removal]:
    """Apply every policy with a limited period once; record the run unless it is a dry run.

    Once `stopping` is set, the run stops after the table (or the batch of deleted rows) in hand and records
    what it did remove, so that nothing is removed without a record.
    """
    schema = await check_schema(conn, catalogue)
    started = dt.datetime.now(dt.UTC)
    removals = []
    for category, table in _limited_tables(catalogue):
        if stopping is not None and stopping.is_set():
            log.info("retention: stopping before %s.%s", category.id, table)
            break
        removals.append(
            await _apply(conn, schema, category, table, now=now, dry_run=dry_run, stopping=stopping)
        )
    if not dry_run:
        await _record(conn, removals, started=started, now=now)
    return removals


def _limited_tables(catalogue: Catalogue) -> list[tuple[Category, str]]:
    return [
        (category, table)
        for category in catalogue.categories
        if category.keep is not None and category.time_column is not None
        for table in category.tables
    ]


async def _record(
    conn: Connection, removals: list[Removal], *, started: dt.datetime, now: dt.datetime
) -> None:
    async with conn.transaction():
        run_id = await conn.fetchval(queries.INSERT_RUN, started, now)
        await conn.executemany(
            queries.INSERT_RUN_CATEGORY,
            [
                (run_id, r.category, r.table, r.cutoff, r.method, r.chunks, r.rows, r.seconds)
                for r in removals
            ],
        )


async def _apply(
    conn: Connection,
    schema: Schema,
    category: Category,
    table: str,
    *,
    now: dt.datetime,
    dry_run: bool,
    stopping: asyncio.Event | None,
) -> Removal:
    started = time.perf_counter()
    column = category.time_column
    if column is None:
        raise ValueError(f"category {category.id} names no time column")
    hypertable = table in schema.chunk_intervals
    cutoff = cutoff_for(category, hypertable, now)
    older = queries.count_older(schema, table=table, column=column)
    if hypertable:
        async with conn.transaction():
            rows = int(await conn.fetchval(older, cutoff))
            chunks = int(await conn.fetchval(queries.EXPIRED_CHUNKS, table, cutoff))
            if not dry_run and chunks:
                chunks = int(await conn.fetchval(queries.DROP_EXPIRED_CHUNKS, table, cutoff) or 0)
        method = "drop_chunks"
    else:
        if dry_run:
            rows = int(await conn.fetchval(older, cutoff))
        else:
            rows = await _delete_in_batches(conn, schema, table, column, cutoff, stopping=stopping)
        chunks, method = 0, "delete"
    removal = Removal(category.id, table, method, cutoff, chunks, rows, time.perf_counter() - started)
    log.info(
        "%s%s.%s: cutoff %s, %d chunks and %d rows %s in %.2f s",
        "(dry run) " if dry_run else "",
        category.id,
        table,
        cutoff.isoformat(),
        removal.chunks,
        removal.rows,
        "to remove" if dry_run else "removed",
        removal.seconds,
    )
    return removal


async def _delete_in_batches(
    conn: Connection,
    schema: Schema,
    table: str,
    column: str,
    cutoff: dt.datetime,
    *,
    stopping: asyncio.Event | None,
) -> int:
    """Delete expired rows a batch at a time, each batch its own short transaction."""
    key = await _primary_key(conn, table)
    statement = queries.delete_older_batch(schema, table=table, key=key, column=column)
    removed = 0
    while True:
        try:
            async with conn.transaction():
                await conn.execute(queries.SET_LOCK_TIMEOUT)
                status = await conn.execute(statement, cutoff, DELETE_BATCH_ROWS)
        except asyncpg.LockNotAvailableError:
            # The ingest holds one of these rows right now; the next run takes the rest.
            log.warning(
                "%s: a row was locked for %s; leaving the rest for the next run", table, queries.LOCK_TIMEOUT
            )
            return removed
        deleted = int(status.rsplit(" ", 1)[1])  # "DELETE 5000"
        removed += deleted
        if deleted < DELETE_BATCH_ROWS:
            return removed
        if stopping is not None and stopping.is_set():
            log.info("%s: stopping; the next run removes the rest", table)
            return removed


async def _primary_key(conn: Connection, table: str) -> str:
    columns = await conn.fetch(queries.PRIMARY_KEY_COLUMNS, table)
    if len(columns) != 1:
        raise ValueError(f"table {table} needs a one-column primary key for batched deletes")
    return str(columns[0][0])
