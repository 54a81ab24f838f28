"""`thuis retention report`: per category what is kept, how long, why, the oldest record, the last runs."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from retention import queries
from thuis.catalogue import MEASURED_FROM, Catalogue, Category, Schema, check_schema
from thuis.db import Connection

LAST_RUNS = 3


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


async def build_report(conn: Connection, catalogue: Catalogue) -> list[CategoryReport]:
    """Collect the report of every category (of a database the catalogue covers: CatalogueError if not)."""
    schema = await check_schema(conn, catalogue)
    reports = []
    for category in catalogue.categories:
        oldest: dict[str, dt.datetime | None] = {}
        if category.time_column is not None:
            for table in category.tables:
                oldest[table] = await _oldest(conn, schema, table, category.time_column)
        runs = [RunLine(*row) for row in await conn.fetch(queries.RECENT_RUNS, category.id, LAST_RUNS)]
        reports.append(CategoryReport(category, oldest, runs))
    return reports


async def _oldest(conn: Connection, schema: Schema, table: str, column: str) -> dt.datetime | None:
    """The oldest value of the time column; on a hypertable, only its oldest chunk is read."""
    chunk_end = await conn.fetchval(queries.OLDEST_CHUNK_END, table)
    found: dt.datetime | None
    if chunk_end is not None:
        found = await conn.fetchval(queries.oldest_before(schema, table=table, column=column), chunk_end)
    else:
        found = await conn.fetchval(queries.oldest(schema, table=table, column=column))
    return found


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
