"""`thuis retention report`: per category what is kept, how long, why, the oldest record, the last runs."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from thuis.catalogue import MEASURED_FROM, Catalogue, Category

LAST_RUNS = 3
OLDEST_CHUNK_END = """
SELECT min(range_end) FROM timescaledb_information.chunks
WHERE hypertable_schema = 'public' AND hypertable_name = %s
"""
RECENT_RUNS = """
SELECT r.clock, c.table_name, c.cutoff, c.chunks_dropped, c.rows_removed, c.seconds
FROM retention_run_categories c JOIN retention_runs r USING (run_id)
WHERE c.category = %s
ORDER BY r.run_id DESC, c.table_name
LIMIT %s
"""


@dataclass(frozen=True)
class RunLine:
    """One category's part of one run."""

    clock: dt.datetime
    table: str
    cutoff: dt.datetime
    chunks: int
    rows: int
    seconds: float


@dataclass(frozen=True)
class CategoryReport:
    """What an auditor asks about one category."""

    category: Category
    oldest: dict[str, dt.datetime | None]  # per table with a time column: the oldest record still held
    runs: list[RunLine]


def build_report(conn: psycopg.Connection[Any], catalogue: Catalogue) -> list[CategoryReport]:
    """Collect the report of every category."""
    reports = []
    for category in catalogue.categories:
        oldest: dict[str, dt.datetime | None] = {}
        if category.time_column is not None:
            for table in category.tables:
                oldest[table] = _oldest(conn, table, category.time_column)
        runs = [RunLine(*row) for row in conn.execute(RECENT_RUNS, (category.id, LAST_RUNS)).fetchall()]
        reports.append(CategoryReport(category, oldest, runs))
    return reports


def _oldest(conn: psycopg.Connection[Any], table: str, column: str) -> dt.datetime | None:
    """The oldest value of the time column; on a hypertable, only its oldest chunk is read."""
    chunk_end = conn.execute(OLDEST_CHUNK_END, (table,)).fetchone()
    query = sql.SQL("SELECT min({column}) FROM {table}").format(
        column=sql.Identifier(column), table=sql.Identifier(table)
    )
    if chunk_end is not None and chunk_end[0] is not None:
        query = sql.SQL("{} WHERE {} < %s").format(query, sql.Identifier(column))
        row = conn.execute(query, (chunk_end[0],)).fetchone()
    else:
        row = conn.execute(query).fetchone()
    return row[0] if row else None


def render_report(reports: list[CategoryReport], *, now: dt.datetime) -> str:
    """Return the report as text, one block per category."""
    lines = [f"Retention report, {now.isoformat(timespec='seconds')}", ""]
    for report in reports:
        category = report.category
        lines.append(f"{category.name} [{category.id}]")
        lines.append(f"  holds        {category.examples}")
        lines.append(
            f"  kept         {category.keep_text}, counted from {MEASURED_FROM[category.measured_from]}"
            f"; legal minimum {category.legal_minimum_text}"
        )
        lines.append(f"  legal basis  {category.legal_basis}")
        lines.append(f"  source       {category.source}")
        lines.append(f"  tables       {', '.join(category.tables)}")
        for table, oldest in report.oldest.items():
            held = "nothing held" if oldest is None else oldest.isoformat(timespec="seconds")
            lines.append(f"  oldest       {table}: {held}")
        for run in report.runs:
            lines.append(
                f"  run          {run.clock.isoformat(timespec='seconds')}: {run.table} before "
                f"{run.cutoff.isoformat(timespec='seconds')}: {run.chunks} chunks, {run.rows} rows removed "
                f"in {run.seconds:.2f} s"
            )
        if category.keep is not None and category.tables and not report.runs:
            lines.append("  run          never")
        lines.append("")
    return "\n".join(lines)
