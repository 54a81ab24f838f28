"""Apply every retention policy once: drop expired chunks of hypertables, delete expired rows in batches."""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from thuis.catalogue import Catalogue, Category, check_schema

log = logging.getLogger(__name__)

DELETE_BATCH_ROWS = 5000
# A retention DELETE never waits long for a lock the ingest holds: it gives way and tries the next batch.
LOCK_TIMEOUT = "2s"
HYPERTABLE_CHUNK_INTERVAL = """
SELECT d.time_interval FROM timescaledb_information.dimensions d
WHERE d.hypertable_schema = 'public' AND d.hypertable_name = %s AND d.dimension_number = 1
"""
EXPIRED_CHUNKS = """
SELECT count(*) FROM timescaledb_information.chunks
WHERE hypertable_schema = 'public' AND hypertable_name = %s AND range_end <= %s
"""


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


def run_retention(
    conn: psycopg.Connection[Any], catalogue: Catalogue, *, now: dt.datetime, dry_run: bool = False
) -> list[Removal]:
    """Apply every policy with a limited period once; record the run unless it is a dry run."""
    check_schema(conn, catalogue)
    started = dt.datetime.now(dt.UTC)
    removals = []
    for category in catalogue.categories:
        if category.keep is None or category.time_column is None:
            continue
        for table in category.tables:
            removals.append(_apply(conn, category, table, category.time_column, now=now, dry_run=dry_run))
    if not dry_run:
        with conn.transaction():
            run = conn.execute(
                "INSERT INTO retention_runs (started_at, finished_at, clock) VALUES (%s, now(), %s) "
                "RETURNING run_id",
                (started, now),
            ).fetchone()
            if run is None:
                raise RuntimeError("INSERT ... RETURNING returned nothing")
            for removal in removals:
                conn.execute(
                    "INSERT INTO retention_run_categories (run_id, category, table_name, cutoff, method, "
                    "chunks_dropped, rows_removed, seconds) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    (
                        run[0],
                        removal.category,
                        removal.table,
                        removal.cutoff,
                        removal.method,
                        removal.chunks,
                        removal.rows,
                        removal.seconds,
                    ),
                )
    return removals


def _apply(
    conn: psycopg.Connection[Any],
    category: Category,
    table: str,
    column: str,
    *,
    now: dt.datetime,
    dry_run: bool,
) -> Removal:
    started = time.perf_counter()
    hypertable = conn.execute(HYPERTABLE_CHUNK_INTERVAL, (table,)).fetchone() is not None
    cutoff = cutoff_for(category, hypertable, now)
    older = sql.SQL("SELECT count(*) FROM {} WHERE {} < %s").format(
        sql.Identifier(table), sql.Identifier(column)
    )
    if hypertable:
        with conn.transaction():
            rows = _count(conn, older, cutoff)
            chunks = _count(conn, sql.SQL(EXPIRED_CHUNKS), table, cutoff)
            if not dry_run and chunks:
                dropped = conn.execute(
                    "SELECT retention_drop_chunks(%s::regclass, %s)", (table, cutoff)
                ).fetchone()
                chunks = dropped[0] if dropped else 0
        method = "drop_chunks"
    else:
        rows = _count(conn, older, cutoff) if dry_run else _delete_in_batches(conn, table, column, cutoff)
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


def _count(conn: psycopg.Connection[Any], query: sql.SQL | sql.Composed, *params: object) -> int:
    row = conn.execute(query, params).fetchone()
    return int(row[0]) if row else 0


def _delete_in_batches(conn: psycopg.Connection[Any], table: str, column: str, cutoff: dt.datetime) -> int:
    """Delete expired rows a batch at a time, each batch its own short transaction."""
    key = _primary_key(conn, table)
    statement = sql.SQL(
        "DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM {table} WHERE {column} < %s LIMIT %s)"
    ).format(table=sql.Identifier(table), key=sql.Identifier(key), column=sql.Identifier(column))
    removed = 0
    while True:
        try:
            with conn.transaction():
                conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(LOCK_TIMEOUT)))
                deleted = conn.execute(statement, (cutoff, DELETE_BATCH_ROWS)).rowcount
        except psycopg.errors.LockNotAvailable:
            # The ingest holds one of these rows right now; the next run takes the rest.
            log.warning("%s: a row was locked for %s; leaving the rest for the next run", table, LOCK_TIMEOUT)
            return removed
        removed += deleted
        if deleted < DELETE_BATCH_ROWS:
            return removed


def _primary_key(conn: psycopg.Connection[Any], table: str) -> str:
    row = conn.execute(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
        "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary",
        (table,),
    ).fetchall()
    if len(row) != 1:
        raise ValueError(f"table {table} needs a one-column primary key for batched deletes")
    return str(row[0][0])
