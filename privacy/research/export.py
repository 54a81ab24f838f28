"""Research exports: per-household series under one-time pseudonyms, or aggregates over at least k households.

`prepare_export` records the request, decides which households may be in it and under which coarse cell, and
refuses (recording why) what would break a rule; `PreparedExport.chunks` then streams the archive from a
server-side cursor in fixed batches, so memory stays bounded whatever the size. The API and `thuis export`
both run this code. See docs/anonymisation.md.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import json
import logging
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast
from zoneinfo import ZoneInfo

import asyncpg
import pyarrow as pa

from privacy.location import release
from privacy.research import queries
from privacy.research.files import MEDIA_TYPE, Column, ExportArchive
from privacy.research.request import ExportRefusedError, ExportRequest, Measure, check_request, region_filter
from thuis import __version__
from thuis.db import Connection

log = logging.getLogger(__name__)

FETCH_ROWS = 20_000  # rows per round trip of the cursor: the bound on what an export holds in memory
# Households per statement: each sorts only its own rows (in memory, not on disk), and the rows come out in
# the archive's order without one sort of the whole export.
HOUSEHOLDS_PER_QUERY = 250
PSEUDONYM_HEX = 16  # 64 bits: no two of even millions of households collide in practice
MANIFEST_VERSION = 1
# Sub-daily periods run from midnight to midnight here; the buckets themselves are UTC.
PERIOD_TIME_ZONE = "Europe/Amsterdam"
SUB_DAILY = ("15min", "hour")
RULES = {
    "ownerless": "a home without an owner is left out: nobody could object for it",
    "owner_account_closed": "a home whose owner's account is closed is left out",
    "restricted": "a home whose owner restricted processing (afschermen) is left out",
    "objected": "a home whose owner objects to research use is left out",
    "without_cell": "a home without a cell in the chosen scheme is left out",
}

HOUSEHOLD_COLUMNS: tuple[Column, ...] = (
    Column("pseudonym", pa.string(), "the household under a pseudonym made for this export only"),
    Column("cell", pa.string(), "its coarse cell, holding at least k households of the export"),
    Column("period_start", pa.date32(), "first day of the bucket, in the household's time zone"),
    Column("measure", pa.string(), "<device kind>.<metric>"),
    Column("statistic", pa.string(), "'consumption' (meter readings: use in the bucket) or 'mean'"),
    Column("value", pa.float64(), "the value, summed over the household's devices of the kind"),
    Column("days_with_data", pa.int32(), "days of the bucket with data"),
)


def _aggregate_columns(resolution: str) -> tuple[Column, ...]:
    sub_daily = resolution in SUB_DAILY
    return (
        Column("cell", pa.string(), "the coarse cell, holding at least k households of the export"),
        Column(
            "period_start",
            pa.timestamp("us", tz="UTC") if sub_daily else pa.date32(),
            "start of the bucket (UTC)" if sub_daily else "first day of the bucket, in the households' zone",
        ),
        Column("measure", pa.string(), "<device kind>.<metric>"),
        Column("statistic", pa.string(), "'consumption' (meter readings: use in the bucket) or 'mean'"),
        Column("households", pa.int32(), "households with a value in the group (at least k)"),
        Column("total", pa.float64(), "sum of the households' values"),
        Column("mean", pa.float64(), "mean of the households' values"),
    )


@dataclass
class _Selection:
    """Which households the export holds and under which cell, and how many each rule left out."""

    with_data: int = 0
    left_out: Counter[str] = field(default_factory=Counter)
    fine_cells: dict[int, str] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {rule: self.left_out.get(rule, 0) for rule in RULES}


@dataclass
class PreparedExport:
    """An export that may be made, holding its transaction until `chunks` has streamed it."""

    export_id: int
    requested_at: dt.datetime
    request: ExportRequest
    conn: Connection
    transaction: Any
    statement: str
    arguments: tuple[Any, ...]
    columns: tuple[Column, ...]
    labels: dict[int, tuple[str, str]]  # households shape: site -> (pseudonym, cell); the sites never leave
    manifest: dict[str, Any]  # complete once `chunks` has streamed the archive
    rows: int = 0
    suppressed_groups: int = 0
    released_groups: int = 0
    failure: str | None = None
    closed: bool = False  # its record says finished or failed

    @property
    def filename(self) -> str:
        """Return the archive's file name."""
        return f"thuis-export-{self.export_id}.zip"

    media_type = MEDIA_TYPE

    async def chunks(self) -> AsyncIterator[bytes]:
        """Stream the archive; record the export finished, or failed with the reason."""
        archive = ExportArchive(file_format=self.request.file_format, columns=self.columns)
        transform = self._household_batch if self.request.shape == "households" else self._aggregate_batch
        try:
            for arguments in self._statements():
                cursor = await self.conn.cursor(self.statement, *arguments)
                while records := await cursor.fetch(FETCH_ROWS):
                    batch = transform(records)
                    self.rows += len(batch[0])
                    if data := archive.add(batch):
                        yield data
            await self.transaction.commit()
            manifest = self.manifest = self._final_manifest()
            yield archive.finish(manifest)
            await _close_record(self.conn, self.export_id, status="finished", manifest=manifest)
            self.closed = True
        except (GeneratorExit, asyncio.CancelledError):
            raise  # not read to its end: `close` records it
        except BaseException as err:
            self.failure = _describe(err)
            raise

    async def close(self) -> None:
        """Record an export that did not finish as failed and end its transaction; safe to call twice.

        Call it when the stream is over however it ended, outside any cancelled scope: a client that goes
        away cancels the stream itself, and a cancelled task cannot write the record.
        """
        if self.closed:
            return
        reason = self.failure or "the archive was not read to its end (the client went away)"
        log.warning("research export %d failed: %s", self.export_id, reason)
        try:
            if not self.conn.is_closed() and self.conn.is_in_transaction():
                await self.transaction.rollback()
            await _close_record(self.conn, self.export_id, status="failed", reason=reason)
            self.closed = True
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as record_err:
            log.error(  # noqa: TRY400 - the failure itself was logged above; this one needs no traceback
                "research export %d: could not record its failure: %s", self.export_id, record_err
            )

    def _statements(self) -> Iterator[tuple[Any, ...]]:
        """Split the households into runs of whole cells (aggregates) or of pseudonyms, in output order.

        The arguments hold the households at $1 and, at $7, their rank (households) or cell (aggregates);
        a run of households in output order gives rows in output order, so the runs simply follow each other.
        """
        sites, per_site = self.arguments[0], self.arguments[6]
        pairs = list(zip(sites, per_site, strict=True))
        if self.request.shape == "aggregates":
            pairs.sort(key=lambda pair: (pair[1], pair[0]))
        run: list[tuple[int, Any]] = []
        for index, pair in enumerate(pairs):
            run.append(pair)
            next_cell = pairs[index + 1][1] if index + 1 < len(pairs) else None
            whole = self.request.shape == "households" or next_cell != pair[1]
            if (len(run) >= HOUSEHOLDS_PER_QUERY and whole) or index + 1 == len(pairs):
                yield ([s for s, _ in run], *self.arguments[1:6], [v for _, v in run], *self.arguments[7:])
                run = []

    def _household_batch(self, records: Sequence[asyncpg.Record]) -> list[list[Any]]:
        labels = [self.labels[record["site_id"]] for record in records]
        return [
            [label[0] for label in labels],
            [label[1] for label in labels],
            [record["bucket"] for record in records],
            [record["measure"] for record in records],
            ["consumption" if record["meter"] else "mean" for record in records],
            [record["value"] for record in records],
            [record["days"] for record in records],
        ]

    def _aggregate_batch(self, records: Sequence[asyncpg.Record]) -> list[list[Any]]:
        k = self.request.k
        released = [record for record in records if record["households"] >= k]
        self.suppressed_groups += len(records) - len(released)
        self.released_groups += len(released)
        return [
            [record["cell"] for record in released],
            [record["bucket"] for record in released],
            [record["measure"] for record in released],
            ["consumption" if record["meter"] else "mean" for record in released],
            [record["households"] for record in released],
            [record["total"] for record in released],
            [record["mean"] for record in released],
        ]

    def _final_manifest(self) -> dict[str, Any]:
        manifest = dict(self.manifest)
        manifest["rows"] = self.rows
        if self.request.shape == "aggregates":
            manifest["groups"] = {
                "released": self.released_groups,
                "suppressed_under_k": self.suppressed_groups,
            }
        manifest["finished_at"] = dt.datetime.now(dt.UTC).isoformat()
        return manifest


async def prepare_export(
    conn: Connection, *, request: ExportRequest, requested_by: int | None, via: str
) -> PreparedExport:
    """Record the request and plan the export; refuse (recorded, with the reason) what breaks a rule."""
    parameters = {**request.parameters(), "via": via}
    record = await conn.fetchrow(queries.INSERT_EXPORT, requested_by, json.dumps(parameters))
    if record is None:
        raise RuntimeError("the export was not recorded")
    export_id: int = record["export_id"]
    requested_at: dt.datetime = record["requested_at"]
    transaction = None
    try:
        measures = check_request(request)
        # One snapshot for the choice of households and their data: a restriction given meanwhile
        # cannot shrink a released cell under k.
        transaction = conn.transaction(isolation="repeatable_read", readonly=True)
        await transaction.start()
        await conn.execute(queries.SESSION_SETTINGS)
        selection = await _select_households(conn, request=request, measures=measures)
        cells = _release(selection, request)
        prepared = _plan(conn, request, measures, selection, cells, export_id, requested_at, transaction)
    except ExportRefusedError as refusal:
        if transaction is not None:
            await transaction.rollback()
        await _close_record(conn, export_id, status="refused", reason=refusal.reason)
        log.info("research export %d refused: %s", export_id, refusal.reason)
        raise
    except BaseException as err:
        if transaction is not None:
            await transaction.rollback()
        await _close_record(conn, export_id, status="failed", reason=_describe(err))
        raise
    prepared.manifest["parameters"] = parameters
    return prepared


def period_bounds(request: ExportRequest) -> tuple[dt.date | dt.datetime, dt.date | dt.datetime]:
    """Return the period as the source is indexed: dates for days and coarser, else local midnights."""
    if request.resolution in SUB_DAILY:
        zone = ZoneInfo(PERIOD_TIME_ZONE)
        return (
            dt.datetime.combine(request.start, dt.time(), tzinfo=zone),
            dt.datetime.combine(request.end, dt.time(), tzinfo=zone),
        )
    return request.start, request.end


async def _select_households(
    conn: Connection, *, request: ExportRequest, measures: list[Measure]
) -> _Selection:
    start, end = period_bounds(request)
    statement = queries.CANDIDATES_HOURLY if request.resolution in SUB_DAILY else queries.CANDIDATES_DAILY
    candidates = await conn.fetch(
        statement, start, end, [m.device_kind for m in measures], [m.metric for m in measures]
    )
    in_region = region_filter(request.region)
    selection = _Selection()
    for candidate in candidates:
        postcode_area, h3_cell = candidate["postcode_area"], candidate["h3_cell"]
        if not in_region(postcode_area, h3_cell):
            continue
        selection.with_data += 1
        cell = postcode_area if request.scheme == "pc4" else h3_cell
        rule = candidate["excluded_by"] or (None if cell is not None else "without_cell")
        if rule is not None:
            selection.left_out[rule] += 1
        elif cell is not None:
            selection.fine_cells[candidate["site_id"]] = cell
    return selection


@dataclass(frozen=True)
class _Cells:
    """The cell each released household goes under, and the households suppressed."""

    released: dict[int, str]
    suppressed: frozenset[int]


def _release(selection: _Selection, request: ExportRequest) -> _Cells:
    eligible = len(selection.fine_cells)
    where = "the region" if request.region else "all of Thuis"
    if eligible < request.k:
        raise ExportRefusedError(
            f"{where} holds {eligible} households with data for these measures in this period after "
            f"leaving out those the rules exclude ({_left_out(selection)}); an export needs at least "
            f"k = {request.k}"
        )
    result = release(cast("dict[Hashable, str]", selection.fine_cells), scheme=request.scheme, k=request.k)
    cells = _Cells(cast("dict[int, str]", result.cells), cast("frozenset[int]", result.suppressed))
    if not cells.released:
        raise ExportRefusedError(
            f"none of the {eligible} households falls in a {request.scheme} cell that holds k = {request.k} "
            "of them, even merged up to the coarsest cell; ask for a larger region or a smaller k"
        )
    return cells


def _left_out(selection: _Selection) -> str:
    counts = [f"{n} {rule.replace('_', ' ')}" for rule, n in selection.counts().items() if n]
    return ", ".join(counts) or "none"


def _plan(  # noqa: PLR0917 - the parts of a plan, named
    conn: Connection,
    request: ExportRequest,
    measures: list[Measure],
    selection: _Selection,
    cells: _Cells,
    export_id: int,
    requested_at: dt.datetime,
    transaction: Any,
) -> PreparedExport:
    start, end = period_bounds(request)
    sites = sorted(cells.released)
    measure_arguments = (
        [m.device_kind for m in measures],
        [m.metric for m in measures],
        [m.meter for m in measures],
    )
    labels: dict[int, tuple[str, str]] = {}
    if request.shape == "households":
        pseudonyms = _pseudonyms(sites)
        sites.sort(key=pseudonyms.__getitem__)  # rows come in pseudonym order, which says nothing of the site
        labels = {site: (pseudonyms[site], cells.released[site]) for site in sites}
        per_site: list[Any] = list(range(len(sites)))
        statement = queries.HOUSEHOLD_SERIES_DAY if request.resolution == "day" else queries.HOUSEHOLD_SERIES
        columns = tuple(HOUSEHOLD_COLUMNS)
    else:
        per_site = [cells.released[site] for site in sites]
        statement = {
            "15min": queries.AGGREGATES_QUARTER_HOURLY,
            "hour": queries.AGGREGATES_HOURLY,
            "day": queries.AGGREGATES_DAY,
        }.get(request.resolution, queries.AGGREGATES_DAILY)
        columns = _aggregate_columns(request.resolution)
    arguments: tuple[Any, ...] = (sites, start, end, *measure_arguments, per_site)
    if request.resolution in ("day", "week", "month"):
        arguments += (request.resolution,)
    manifest = _manifest(request, selection, cells, export_id, requested_at, columns)
    return PreparedExport(
        export_id, requested_at, request, conn, transaction, statement, arguments, columns, labels, manifest
    )


def _pseudonyms(sites: list[int]) -> dict[int, str]:
    """Return a pseudonym per household: HMAC-SHA256 under a key made now and dropped when this returns."""
    key = secrets.token_bytes(32)
    pseudonyms = {
        site: hmac.new(key, f"site:{site}".encode(), hashlib.sha256).hexdigest()[:PSEUDONYM_HEX]
        for site in sites
    }
    del key  # never stored, never logged: two exports cannot be joined on their pseudonyms
    if len(set(pseudonyms.values())) != len(pseudonyms):
        return _pseudonyms(sites)  # a 64-bit collision: draw a new key
    return pseudonyms


def _manifest(  # noqa: PLR0917 - the parts of a manifest, named
    request: ExportRequest,
    selection: _Selection,
    cells: _Cells,
    export_id: int,
    requested_at: dt.datetime,
    columns: tuple[Column, ...],
) -> dict[str, Any]:
    released_sizes = dict(sorted(Counter(cells.released.values()).items()))
    fine_of = selection.fine_cells
    merged = {fine_of[site] for site, cell in cells.released.items() if fine_of[site] != cell}
    manifest: dict[str, Any] = {
        "manifest_version": MANIFEST_VERSION,
        "software": {"name": "thuis", "version": __version__},
        "export_id": export_id,
        "requested_at": requested_at.isoformat(),
        "shape": request.shape,
        "resolution": request.resolution,
        "k": request.k,
        "rules": {
            "applied": list(RULES.values())
            + [
                f"each released {request.scheme} cell holds at least k = {request.k} households of the "
                "export; smaller cells are merged into their parent, what stays under k is suppressed",
            ]
            + (
                [f"a group (cell, bucket, measure) of fewer than k = {request.k} households is suppressed"]
                if request.shape == "aggregates"
                else ["per-household series at daily resolution or coarser only"]
            ),
            "households_left_out": selection.counts(),
        },
        "households": {
            "with_data": selection.with_data,
            "eligible": len(fine_of),
            "suppressed_in_cells_under_k": len(cells.suppressed),
            "released": len(cells.released),
        },
        "cells": {
            "scheme": request.scheme,
            "released": released_sizes,
            "fine_cells_merged_into_a_parent": len(merged),
            "fine_cells_suppressed": len({fine_of[site] for site in cells.suppressed}),
        },
        "period": {
            "start": request.start.isoformat(),
            "end": request.end.isoformat(),
            "bounds": "local days of each household"
            if request.resolution in ("day", "week", "month")
            else f"midnight to midnight in {PERIOD_TIME_ZONE}; buckets in UTC",
        },
        "columns": {column.name: column.description for column in columns},
        "location": "no postcode, address, coordinate or H3 cell finer than the released cells",
    }
    if request.shape == "households":
        manifest["pseudonym"] = (
            f"first {PSEUDONYM_HEX} hex digits of HMAC-SHA256 under a random key made for this export and "
            "discarded after it; pseudonyms of two exports cannot be joined"
        )
    return manifest


async def _close_record(
    conn: Connection,
    export_id: int,
    *,
    status: str,
    manifest: dict[str, Any] | None = None,
    reason: str | None = None,
) -> None:
    await conn.execute(
        queries.FINISH_EXPORT, export_id, status, None if manifest is None else json.dumps(manifest), reason
    )


def _describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {str(err)[:300]}" if str(err) else type(err).__name__


async def list_exports(
    conn: Connection, *, requested_by: int | None, before: int | None, limit: int
) -> list[asyncpg.Record]:
    """Return export records, newest first: one requester's, or everyone's (None)."""
    return await conn.fetch(queries.SELECT_EXPORTS, requested_by, before, limit)
