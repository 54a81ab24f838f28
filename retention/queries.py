"""Every SQL statement of retention: the worker's and the report's. Values are always bound ($1, $2, ...).

Tables and columns come from the catalogue, so a few statements are made per table. asyncpg has no
composition of identifiers, so `quote_table` and `quote_column` do it, and only for names that pg_catalog
listed in the public schema (thuis.catalogue.Schema); a value is never formatted in.
"""

from __future__ import annotations

from thuis.catalogue import Schema

# A retention DELETE never waits long for a lock the ingest holds: it gives way and tries the next batch.
LOCK_TIMEOUT = "2s"
SET_LOCK_TIMEOUT = f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"

EXPIRED_CHUNKS = """
SELECT count(*) FROM timescaledb_information.chunks
WHERE hypertable_schema = 'public' AND hypertable_name = $1 AND range_end <= $2
"""
# The worker may not drop chunks itself; the schema owner's function drops them for the tables it allows.
DROP_EXPIRED_CHUNKS = "SELECT retention_drop_chunks(('public.' || quote_ident($1))::regclass, $2)"

PRIMARY_KEY_COLUMNS = """
SELECT a.attname::text FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
WHERE n.nspname = 'public' AND c.relname = $1 AND i.indisprimary
"""

INSERT_RUN = """
INSERT INTO retention_runs (started_at, finished_at, clock) VALUES ($1, now(), $2) RETURNING run_id
"""
INSERT_RUN_CATEGORY = """
INSERT INTO retention_run_categories (run_id, category, table_name, cutoff, method, chunks_dropped,
                                      rows_removed, seconds)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
"""

# The report: a hypertable's oldest chunk bounds the search for its oldest record.
OLDEST_CHUNK_END = """
SELECT min(range_end) FROM timescaledb_information.chunks
WHERE hypertable_schema = 'public' AND hypertable_name = $1
"""
RECENT_RUNS = """
SELECT r.clock, c.table_name, c.cutoff, c.chunks_dropped, c.rows_removed, c.seconds
FROM retention_run_categories c JOIN retention_runs r USING (run_id)
WHERE c.category = $1
ORDER BY r.run_id DESC, c.table_name
LIMIT $2
"""


def count_older(schema: Schema, *, table: str, column: str) -> str:
    """Count the rows of `table` whose `column` is before $1."""
    quoted_table, quoted_column = quote_table(schema, table), quote_column(schema, table, column)
    return f"SELECT count(*) FROM {quoted_table} WHERE {quoted_column} < $1"  # noqa: S608


def delete_older_batch(schema: Schema, *, table: str, key: str, column: str) -> str:
    """Delete at most $2 rows of `table` whose `column` is before $1, chosen by their one-column key."""
    quoted_table, quoted_key = quote_table(schema, table), quote_column(schema, table, key)
    quoted_column = quote_column(schema, table, column)
    return (
        f"DELETE FROM {quoted_table} WHERE {quoted_key} IN "  # noqa: S608
        f"(SELECT {quoted_key} FROM {quoted_table} WHERE {quoted_column} < $1 LIMIT $2)"
    )


def oldest(schema: Schema, *, table: str, column: str) -> str:
    """Return the smallest value of `column` in `table`."""
    return f"SELECT min({quote_column(schema, table, column)}) FROM {quote_table(schema, table)}"  # noqa: S608


def oldest_before(schema: Schema, *, table: str, column: str) -> str:
    """Return the smallest value of `column` in `table` below $1 (on a hypertable: only early chunks)."""
    return f"{oldest(schema, table=table, column=column)} WHERE {quote_column(schema, table, column)} < $1"


def quote_table(schema: Schema, table: str) -> str:
    """Return a table of the public schema as a qualified, quoted identifier; refuse any other name."""
    if table not in schema.columns:
        raise ValueError(f"{table!r} is not a table of the public schema")
    return f"public.{_quote(table)}"


def quote_column(schema: Schema, table: str, column: str) -> str:
    """Return a column of a table of the public schema as a quoted identifier; refuse any other name."""
    if column not in schema.columns.get(table, ()):
        raise ValueError(f"{column!r} is not a column of table {table!r}")
    return _quote(column)


def _quote(name: str) -> str:
    # PostgreSQL's quoting of an identifier: in double quotes, a double quote doubled.
    return '"' + name.replace('"', '""') + '"'
