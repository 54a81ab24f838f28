"""The catalogue of data categories (thuis/policies.toml): loaded, checked, held against the schema."""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thuis import queries
from thuis.db import Connection

CATALOGUE_FILE = Path(__file__).resolve().parent / "policies.toml"
MEASURED_FROM = {
    "recorded": "the time it was recorded",
    "contract_end": "the end of the contract",
    "last_activity": "the last activity",
    "order_date": "the order date",
    "expiry": "the moment it expires",
    "end_of_access": "the end of the access",
    "request_closed": "the closing of the request",
}
# What erasure at a data subject's request does with a category: erase it, keep it while a legal duty
# still holds it (until its retention period runs out; the refusal names the duty and the date), or keep it
# for its period with the person's id replaced by a pseudonym (the record of who did what: accountability).
ON_ERASURE = {
    "erase": "erased",
    "keep_for_legal_duty": "kept while the legal duty holds it",
    "pseudonymise": "kept for its period, the person's id replaced by a pseudonym",
}
_DURATION = re.compile(r"(?P<count>0|[1-9]\d*) (?P<unit>day|month|year)s?")
_FIELDS = {
    "id",
    "name",
    "examples",
    "personal",
    "tables",
    "measured_from",
    "time_column",
    "keep",
    "legal_minimum",
    "legal_basis",
    "source",
    "on_erasure",
}
_REQUIRED = _FIELDS - {"time_column", "on_erasure"}


class CatalogueError(Exception):
    """The catalogue is not acceptable; the message lists every problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("the data catalogue is refused:\n- " + "\n- ".join(problems))
        self.problems = problems


@dataclass(frozen=True, order=True)
class Period:
    """A retention period in calendar units: years and months are added by the calendar, not as days."""

    months: int = 0
    days: int = 0

    @classmethod
    def parse(cls, text: str) -> Period:
        """Read `5 days`, `36 months` or `7 years`; `0 days` keeps a record until the moment counted from."""
        match = _DURATION.fullmatch(text.strip())
        if match is None:
            raise ValueError(f"{text!r} is not a period like '14 days', '36 months' or '7 years'")
        count, unit = int(match["count"]), match["unit"]
        if unit == "day":
            return cls(days=count)
        return cls(months=count * 12 if unit == "year" else count)

    def before(self, moment: dt.datetime) -> dt.datetime:
        """Return the moment this period before `moment` (the cutoff: older records expire)."""
        if self.months:
            months = moment.year * 12 + moment.month - 1 - self.months
            year, month = divmod(months, 12)
            day = min(moment.day, _days_in_month(year, month + 1))
            moment = moment.replace(year=year, month=month + 1, day=day)
        return moment - dt.timedelta(days=self.days)

    def after(self, moment: dt.datetime) -> dt.datetime:
        """Return the moment this period after `moment` (when a record counted from it expires)."""
        if self.months:
            months = moment.year * 12 + moment.month - 1 + self.months
            year, month = divmod(months, 12)
            day = min(moment.day, _days_in_month(year, month + 1))
            moment = moment.replace(year=year, month=month + 1, day=day)
        return moment + dt.timedelta(days=self.days)

    def at_least(self, other: Period) -> bool:
        """Say whether this period is never shorter than `other`, whatever the calendar."""
        if not self.days and not other.days:
            return self.months >= other.months
        if not self.months and not other.months:
            return self.days >= other.days
        return self._days_at_least() >= other._days_at_most()

    # N consecutive years hold N // 4 to ceil(N / 4) leap days; a month is 28 to 31 days.
    def _days_at_least(self) -> int:
        years, months = divmod(self.months, 12)
        return years * 365 + years // 4 + months * 28 + self.days

    def _days_at_most(self) -> int:
        years, months = divmod(self.months, 12)
        return years * 365 + -(-years // 4) + months * 31 + self.days

    def __str__(self) -> str:
        if self.days or not self.months:
            return f"{self.days} day{'s' * (self.days != 1)}"
        if self.months % 12 == 0:
            years = self.months // 12
            return f"{years} year{'s' * (years != 1)}"
        return f"{self.months} month{'s' * (self.months != 1)}"


def _days_in_month(year: int, month: int) -> int:
    following = dt.date(year + month // 12, month % 12 + 1, 1)
    return (following - dt.timedelta(days=1)).day


@dataclass(frozen=True)
class Category:
    """One data category and its retention policy."""

    id: str
    name: str
    examples: str
    personal: bool
    tables: tuple[str, ...]
    measured_from: str
    time_column: str | None
    keep: Period | None  # None: indefinitely
    legal_minimum: Period | None  # None: no legal minimum
    legal_basis: str
    source: str
    keep_text: str  # as the catalogue says it: "36 months", "indefinitely"
    legal_minimum_text: str  # "10 years", "none"
    on_erasure: str = "erase"  # see ON_ERASURE


@dataclass(frozen=True)
class Catalogue:
    """Every data category, and the tables that hold no personal data."""

    reviewed: str
    categories: tuple[Category, ...]
    not_personal: dict[str, str]

    def category_of(self, table: str) -> Category | None:
        """Return the category a table belongs to, if any."""
        return next((c for c in self.categories if table in c.tables), None)


def load_catalogue(path: Path = CATALOGUE_FILE) -> Catalogue:
    """Read and check the catalogue; raise CatalogueError listing every problem."""
    try:
        document = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise CatalogueError([f"{path.name} is not valid TOML: {err}"]) from None
    problems: list[str] = []
    categories = []
    for index, raw in enumerate(document.get("category", [])):
        category = _category(raw, index, problems)
        if category is not None:
            categories.append(category)
    not_personal = document.get("not_personal", {})
    if not isinstance(not_personal, dict) or not all(isinstance(v, str) for v in not_personal.values()):
        problems.append("[not_personal] must map table names to why they hold no personal data")
        not_personal = {}
    problems += _cross_checks(categories, not_personal)
    if problems:
        raise CatalogueError(problems)
    return Catalogue(str(document.get("reviewed", "")), tuple(categories), dict(not_personal))


def _category(raw: dict[str, Any], index: int, problems: list[str]) -> Category | None:
    where = f"category {raw.get('id', f'#{index + 1}')!s}"
    missing = sorted(_REQUIRED - raw.keys())
    unknown = sorted(raw.keys() - _FIELDS)
    if missing or unknown:
        problems += [f"{where}: missing {name!r}" for name in missing]
        problems += [f"{where}: unknown field {name!r}" for name in unknown]
        return None
    try:
        keep = None if raw["keep"] == "indefinitely" else Period.parse(raw["keep"])
        minimum = None if raw["legal_minimum"] == "none" else Period.parse(raw["legal_minimum"])
    except ValueError as err:
        problems.append(f"{where}: {err}")
        return None
    category = Category(
        id=raw["id"],
        name=raw["name"],
        examples=raw["examples"],
        personal=bool(raw["personal"]),
        tables=tuple(raw["tables"]),
        measured_from=raw["measured_from"],
        time_column=raw.get("time_column"),
        keep=keep,
        legal_minimum=minimum,
        legal_basis=raw["legal_basis"],
        source=raw["source"],
        keep_text=raw["keep"],
        legal_minimum_text=raw["legal_minimum"],
        on_erasure=raw.get("on_erasure", "erase"),
    )
    if category.measured_from not in MEASURED_FROM:
        problems.append(f"{where}: measured_from must be one of {', '.join(MEASURED_FROM)}")
    if keep is not None and minimum is not None and not keep.at_least(minimum):
        problems.append(f"{where}: keeps {keep}, shorter than its legal minimum of {minimum}")
    if category.on_erasure not in ON_ERASURE:
        problems.append(f"{where}: on_erasure must be one of {', '.join(ON_ERASURE)}")
    if category.on_erasure == "keep_for_legal_duty" and (minimum is None or keep is None):
        problems.append(f"{where}: kept for a legal duty on erasure, but names no legal minimum and period")
    if category.on_erasure == "pseudonymise" and keep is None:
        problems.append(f"{where}: kept pseudonymised after erasure, but for no limited period")
    if not category.tables:
        problems.append(f"{where}: names no table")
    if keep is not None and category.time_column is None:
        problems.append(f"{where}: keeps {keep} but names no time_column to count from")
    return category


def _cross_checks(categories: list[Category], not_personal: dict[str, str]) -> list[str]:
    problems = []
    ids = [category.id for category in categories]
    problems += [
        f"category id {i!r} appears more than once" for i in sorted({i for i in ids if ids.count(i) > 1})
    ]
    owners: dict[str, list[str]] = {}
    for category in categories:
        for table in category.tables:
            owners.setdefault(table, []).append(category.id)
    for table, owned_by in sorted(owners.items()):
        if len(owned_by) > 1:
            problems.append(f"table {table!r} is in more than one category: {', '.join(owned_by)}")
        if table in not_personal:
            problems.append(f"table {table!r} is in category {owned_by[0]!r} and also listed as not personal")
    return problems


@dataclass(frozen=True)
class Schema:
    """The public schema as pg_catalog lists it: each table with its columns, and the hypertables' chunks."""

    columns: dict[str, frozenset[str]]  # table -> its columns
    chunk_intervals: dict[str, dt.timedelta | None]  # hypertable -> the interval of its time dimension

    @property
    def tables(self) -> frozenset[str]:
        """Return the name of every table."""
        return frozenset(self.columns)


async def read_schema(conn: Connection) -> Schema:
    """Read the tables, their columns and the hypertables' chunk intervals of the public schema."""
    columns = {row[0]: frozenset(row[1] or ()) for row in await conn.fetch(queries.COLUMNS_IN_SCHEMA)}
    intervals = {row[0]: row[1] for row in await conn.fetch(queries.CHUNK_INTERVALS)}
    return Schema(columns, intervals)


async def check_schema(conn: Connection, catalogue: Catalogue) -> Schema:
    """Return the schema, or refuse one the catalogue disagrees with: CatalogueError lists each problem."""
    schema = await read_schema(conn)
    problems = [
        f"table {table!r} belongs to no data category (add it to thuis/policies.toml, or to "
        "[not_personal] if it holds no personal data)"
        for table in sorted(schema.tables)
        if catalogue.category_of(table) is None and table not in catalogue.not_personal
    ]
    for category in catalogue.categories:
        problems += _category_problems(category, schema)
    problems += [
        f"[not_personal] names table {table!r}, which does not exist"
        for table in sorted(catalogue.not_personal)
        if table not in schema.tables
    ]
    if problems:
        raise CatalogueError(problems)
    return schema


def _category_problems(category: Category, schema: Schema) -> list[str]:
    problems = []
    for table in category.tables:
        if table not in schema.tables:
            problems.append(f"category {category.id!r} names table {table!r}, which does not exist")
            continue
        if table in schema.chunk_intervals and category.keep is not None:
            interval = schema.chunk_intervals[table]
            if interval != dt.timedelta(days=1):
                problems.append(
                    f"category {category.id!r}: hypertable {table!r} has chunks of {_span(interval)}, "
                    "but retention is exact to the day only with chunks of one day"
                )
        if category.time_column is not None and category.time_column not in schema.columns[table]:
            problems.append(
                f"category {category.id!r}: table {table!r} has no column {category.time_column!r}"
            )
    return problems


def _span(interval: dt.timedelta | None) -> str:
    if interval is None:
        return "a dimension that is not time"
    if interval % dt.timedelta(days=1):
        return str(interval)
    return f"{interval.days} day{'s' * (interval.days != 1)}"
