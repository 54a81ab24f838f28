"""Research releases: noisy aggregates under a privacy budget, or per-household series with consent.

`prepare_release` checks the request (no data read), plans it (privacy/research/plan.py), spends its rho on
the project's ledger, and only then chooses the homes it covers and records them; `PreparedRelease.chunks`
streams the archive from a server-side cursor in fixed batches, adding OpenDP's noise to every statistic of
the plan's grid (cells x buckets x measures, data or not). A refusal says why in words that depend on no
household. The API and `thuis export` both run this code. See docs/anonymisation.md.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import json
import logging
import secrets
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pyarrow as pa

from privacy.research import budget, queries
from privacy.research.accounting import COUNT_SHARE, DELTA, GRANULARITY, epsilon, noise
from privacy.research.files import MEDIA_TYPE, Column, ExportArchive
from privacy.research.geography import Geography, GeographyError, load_geography
from privacy.research.plan import PERIOD_TIME_ZONE, ReleasePlan, make_plan, period_bounds
from privacy.research.request import SUB_DAILY, ReleaseRefusedError, ReleaseRequest, check_request
from thuis import __version__, audit
from thuis.db import Connection
from thuis.metrics import Metric

log = logging.getLogger(__name__)

FETCH_ROWS = 20_000  # rows per round trip of the cursor: the bound on what a release holds in memory
# Households per statement: each sorts only its own rows (in memory, not on disk), and the rows come out in
# the archive's order without one sort of the whole release.
HOUSEHOLDS_PER_QUERY = 250
PSEUDONYM_HEX = 16  # 64 bits: no two of even millions of households collide in practice
MANIFEST_VERSION = 2
AGGREGATES_LABEL = (
    "anonymised statistics under differential privacy: every figure has calibrated noise, and no household "
    "changes what can be learnt from it by more than the privacy loss stated"
)
HOUSEHOLDS_LABEL = (
    "pseudonymised personal data, not anonymised: series of the households whose owner consented to "
    "research use, under pseudonyms made for this release only; handle as personal data (GDPR art. 4(5))"
)
PRIVACY_UNIT = "one household (a home) over its whole history"


def _aggregate_columns(resolution: str) -> tuple[Column, ...]:
    sub_daily = resolution in SUB_DAILY
    return (
        Column("cell", pa.string(), "the released cell of the project's release geography"),
        Column(
            "period_start",
            pa.timestamp("us", tz="UTC") if sub_daily else pa.date32(),
            "start of the bucket (UTC)" if sub_daily else "first day of the bucket, in the households' zone",
        ),
        Column("measure", pa.string(), "<device kind>.<metric>"),
        Column("statistic", pa.string(), "'consumption' (meters: use in the bucket) or 'mean' (gauges)"),
        Column("total", pa.float64(), "sum over the cell's households of their clamped values, plus noise"),
        Column("total_sd", pa.float64(), "standard deviation of the noise in total"),
        Column("households", pa.float64(), "the number of households of the cell in the release, plus noise"),
        Column("households_sd", pa.float64(), "standard deviation of the noise in households"),
    )


HOUSEHOLD_COLUMNS: tuple[Column, ...] = (
    Column("pseudonym", pa.string(), "the household under a pseudonym made for this release only"),
    Column("cell", pa.string(), "its released cell of the project's release geography"),
    Column("period_start", pa.date32(), "first day of the bucket, in the household's time zone"),
    Column("measure", pa.string(), "<device kind>.<metric>"),
    Column("statistic", pa.string(), "'consumption' (meters: use in the bucket) or 'mean' (gauges)"),
    Column("value", pa.float64(), "the value, summed over the household's devices of the kind"),
    Column("days_with_data", pa.int32(), "days of the bucket with data"),
)


@dataclass(frozen=True, slots=True)
class Member:
    """A home a release covers over a window of time its owners allow: site, released cell, window, owners.

    Each day (bucket) of a home is its owner's of that day, and that owner's restriction, objection and
    consent decide whether it is released. An aggregate release has one member per run of adjacent periods
    of owners who allow it (a bucket straddling two such periods is in); a series one member per owner's
    period (a series is one person's). Only buckets wholly inside a member's window are its.
    """

    site_id: int
    cell: str
    since: dt.datetime | None  # None: since the home's beginning
    until: dt.datetime | None  # None: still
    owners: tuple[int, ...]


@dataclass
class PreparedRelease:
    """A release that may be made, its rho spent and its homes recorded, streamed by `chunks`."""

    release_id: int
    requested_at: dt.datetime
    project: budget.Project
    geography: Geography
    plan: ReleasePlan
    members: list[Member]
    conn: Connection
    parameters: dict[str, Any]
    noisy_counts: dict[str, float] = field(default_factory=dict)
    labels: dict[int, str] = field(default_factory=dict)  # series: member -> pseudonym; sites never leave
    rows: int = 0
    manifest: dict[str, Any] = field(default_factory=dict)
    failure: str | None = None
    closed: bool = False
    _snapshot: Any = None  # the read-only transaction the archive is streamed in

    media_type = MEDIA_TYPE

    @property
    def request(self) -> ReleaseRequest:
        """Return what was asked."""
        return self.plan.request

    @property
    def filename(self) -> str:
        """Return the archive's file name."""
        return f"thuis-release-{self.release_id}.zip"

    @property
    def columns(self) -> tuple[Column, ...]:
        """Return the columns of the data file."""
        if self.request.kind == "households":
            return HOUSEHOLD_COLUMNS
        return _aggregate_columns(self.request.resolution)

    async def chunks(self) -> AsyncIterator[bytes]:
        """Stream the archive in one read-only snapshot; record the release finished, or failed and why."""
        archive = ExportArchive(file_format=self.request.file_format, columns=self.columns)
        transaction = self._snapshot = self.conn.transaction(isolation="repeatable_read", readonly=True)
        try:
            await transaction.start()
            await self.conn.execute(queries.SESSION_SETTINGS)
            batches = self._series() if self.request.kind == "households" else self._aggregates()
            async for batch in batches:
                self.rows += len(batch[0])
                if data := archive.add(batch):
                    yield data
            await transaction.commit()
            self.manifest = self._manifest(finished=True)
            yield archive.finish(self.manifest)
            await _close_record(self.conn, self.release_id, status="finished", manifest=self.manifest)
            self.closed = True
        except (GeneratorExit, asyncio.CancelledError):
            raise  # not read to its end: `close` records it
        except BaseException as err:
            self.failure = _describe(err)
            raise

    async def close(self) -> None:
        """Record a release that did not finish as failed (its rho stays spent); safe to call twice.

        Call it when the stream is over however it ended, outside any cancelled scope: a client that goes
        away cancels the stream itself, and a cancelled task cannot write the record.
        """
        if self.closed:
            return
        reason = self.failure or "the archive was not read to its end (the client went away)"
        log.warning("research release %d failed: %s", self.release_id, reason)
        try:
            if self._snapshot is not None and not self.conn.is_closed() and self.conn.is_in_transaction():
                await self._snapshot.rollback()
            await _close_record(self.conn, self.release_id, status="failed", reason=reason)
            self.closed = True
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as record_err:
            log.error(  # noqa: TRY400 - the failure itself was logged above; this one needs no traceback
                "research release %d: could not record its failure: %s", self.release_id, record_err
            )

    def _arguments(self, members: list[Member], per_member: list[Any]) -> tuple[Any, ...]:
        request = self.request
        start, end = _source_bounds(request)
        measures = [m.measure for m in self.plan.measures]
        return (
            [member.site_id for member in members],
            start,
            end,
            [m.device_kind for m in measures],
            [m.name for m in measures],
            [m.is_meter for m in measures],
            per_member,
            request.resolution,
            [m.clamp.lower for m in self.plan.measures],
            [m.clamp.upper for m in self.plan.measures],
            [member.since for member in members],
            [member.until for member in members],
        )

    def _statement(self) -> str:
        resolution = self.request.resolution
        if self.request.kind == "households":
            return queries.HOUSEHOLD_SERIES_DAY if resolution == "day" else queries.HOUSEHOLD_SERIES
        return {
            "15min": queries.AGGREGATES_QUARTER_HOURLY,
            "hour": queries.AGGREGATES_HOURLY,
            "day": queries.AGGREGATES_DAY,
        }.get(resolution, queries.AGGREGATES_DAILY)

    async def _rows(self, runs: Iterator[tuple[list[Member], list[Any]]]) -> AsyncIterator[asyncpg.Record]:
        statement = self._statement()
        for members, per_member in runs:
            cursor = await self.conn.cursor(statement, *self._arguments(members, per_member))
            while records := await cursor.fetch(FETCH_ROWS):
                for record in records:
                    yield record

    async def _aggregates(self) -> AsyncIterator[list[list[Any]]]:
        """Yield, cell by cell, every (bucket, measure) of the plan: the exact sum, plus noise."""
        plan = self.plan
        by_cell: dict[str, list[Member]] = defaultdict(list)
        for member in self.members:
            by_cell[member.cell].append(member)
        runs = _cell_runs([(cell, by_cell[cell]) for cell in plan.cells if by_cell[cell]])
        rows = self._rows(runs)
        pending: asyncpg.Record | None = await anext(rows, None)
        bucket_index = {bucket: index for index, bucket in enumerate(plan.buckets)}
        width = len(plan.buckets)
        for cell in plan.cells:
            exact = [[0.0] * width for _ in plan.measures]
            while pending is not None and pending["cell"] == cell:
                index = bucket_index.get(_bucket(pending["bucket"]))
                if index is not None:  # a bucket outside the grid cannot occur; it is not released if it does
                    exact[pending["measure_no"] - 1][index] = float(pending["total"])
                pending = await anext(rows, None)
            yield self._cell_batch(cell, exact)
        if pending is not None:
            raise RuntimeError(f"rows of cell {pending['cell']!r} came out of the plan's order")

    def _cell_batch(self, cell: str, exact: list[list[float]]) -> list[list[Any]]:
        plan = self.plan
        width = len(plan.buckets)
        columns: list[list[Any]] = [[] for _ in range(8)]
        households = self.noisy_counts[cell]
        households_sd = plan.counts.scale if plan.counts else 0.0
        for measure, values in zip(plan.measures, exact, strict=True):
            if measure.sums is None:
                raise RuntimeError("an aggregate release without noise")
            noisy = noise(measure.sums, values)
            columns[0] += [cell] * width
            columns[1] += plan.buckets
            columns[2] += [measure.measure.measure] * width
            columns[3] += [measure.statistic] * width
            columns[4] += noisy
            columns[5] += [measure.sums.scale] * width
            columns[6] += [households] * width
            columns[7] += [households_sd] * width
        return _by_bucket(columns, width, len(plan.measures))

    async def _series(self) -> AsyncIterator[list[list[Any]]]:
        """Yield the series of the consenting owners' periods, in pseudonym order, a batch at a time."""
        order = sorted(range(len(self.members)), key=self.labels.__getitem__)
        runs = (
            (
                [self.members[index] for index in order[i : i + HOUSEHOLDS_PER_QUERY]],
                list(range(i, min(i + HOUSEHOLDS_PER_QUERY, len(order)))),
            )
            for i in range(0, len(order), HOUSEHOLDS_PER_QUERY)
        )
        batch: list[list[Any]] = [[] for _ in HOUSEHOLD_COLUMNS]
        async for record in self._rows(runs):
            member = order[record["rank"]]
            for column, value in zip(
                batch,
                (
                    self.labels[member],
                    self.members[member].cell,
                    record["bucket"],
                    record["measure"],
                    "consumption" if record["meter"] else "mean",
                    record["value"],
                    record["days"],
                ),
                strict=True,
            ):
                column.append(value)
            if len(batch[0]) >= FETCH_ROWS:
                yield batch
                batch = [[] for _ in HOUSEHOLD_COLUMNS]
        if batch[0]:
            yield batch

    def _manifest(self, *, finished: bool) -> dict[str, Any]:
        request, plan = self.request, self.plan
        manifest: dict[str, Any] = {
            "manifest_version": MANIFEST_VERSION,
            "software": {"name": "thuis", "version": __version__},
            "release_id": self.release_id,
            "project": {"project_id": self.project.project_id, "name": self.project.name},
            "kind": request.kind,
            "label": AGGREGATES_LABEL if request.kind == "aggregates" else HOUSEHOLDS_LABEL,
            "requested_at": self.requested_at.isoformat(),
            "parameters": self.parameters,
            "resolution": request.resolution,
            "period": {
                "start": request.start.isoformat(),
                "end": request.end.isoformat(),
                "bounds": "local days of each household"
                if request.resolution not in SUB_DAILY
                else f"midnight to midnight in {PERIOD_TIME_ZONE}; buckets in UTC",
                "buckets": len(plan.buckets),
            },
            "cells": {
                "geography_id": self.geography.geography_id,
                "scheme": self.geography.scheme,
                "k": self.geography.k,
                "released": plan.cells,
                "how": "the project's release geography: coarse cells merged to at least k homes when it "
                "was made, the same for every release of the project",
            },
            "columns": {column.name: column.description for column in self.columns},
            "location": "no postcode, address, coordinate or cell finer than the released cells",
            "rows": self.rows,
        }
        if request.kind == "aggregates":
            manifest["privacy"] = {
                "unit": PRIVACY_UNIT,
                "model": "zero-concentrated differential privacy (rho-zCDP); rho adds up over releases",
                "rho_spent": request.rho,
                "rho_accounted": plan.rho,
                "epsilon": epsilon(request.rho),
                "delta": DELTA,
                "mechanism": (
                    "OpenDP's Gaussian mechanism: on a grid of 2^"
                    f"{GRANULARITY} for the sums, the discrete Gaussian for the household counts; "
                    f"{COUNT_SHARE:.0%} of rho for the counts, the rest shared equally by the measures"
                ),
                "noise": "not rounded or clipped afterwards: a total or a count may come out below zero, "
                "and averages over many figures stay unbiased",
            }
            manifest["accuracy"] = plan.accuracy()
        else:
            manifest["privacy"] = {
                "unit": PRIVACY_UNIT,
                "consent": "only households whose owner gave research consent on their privacy page, and "
                "who neither restricted processing nor objected, over the time they owned the home; a "
                "home that changed hands is a series per owner; each such release is in their access log",
                "pseudonym": f"first {PSEUDONYM_HEX} hex digits of HMAC-SHA256 under a random key made for "
                "this release and discarded after it",
                "rho_spent": 0.0,
            }
        if finished:
            manifest["finished_at"] = dt.datetime.now(dt.UTC).isoformat()
        return manifest


def _bucket(value: Any) -> Any:
    """Return a bucket as the plan's grid holds it: a date, or an aware UTC datetime."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC)
    return value


def _by_bucket(columns: list[list[Any]], width: int, measures: int) -> list[list[Any]]:
    """Reorder a cell's columns from measure-major to bucket-major: (bucket, measure) as in every release."""
    order = [m * width + b for b in range(width) for m in range(measures)]
    return [[column[i] for i in order] for column in columns]


def _cell_runs(cells: Sequence[tuple[str, list[Member]]]) -> Iterator[tuple[list[Member], list[Any]]]:
    """Split the members into runs of whole cells, in the plan's cell order, of about a few hundred."""
    run_members: list[Member] = []
    run_cells: list[str] = []
    for cell, members in cells:
        run_members += members
        run_cells += [cell] * len(members)
        if len(run_members) >= HOUSEHOLDS_PER_QUERY:
            yield run_members, run_cells
            run_members, run_cells = [], []
    if run_members:
        yield run_members, run_cells


def _source_bounds(request: ReleaseRequest) -> tuple[dt.date | dt.datetime, dt.date | dt.datetime]:
    """Return the period as the source is indexed: dates for days and coarser, else local midnights."""
    if request.resolution in SUB_DAILY:
        return period_bounds(request)
    return request.start, request.end


async def preview(conn: Connection, *, request: ReleaseRequest) -> ReleasePlan:
    """Plan a release without spending or reading any data: what it would cost, how accurate it would be."""
    measures = check_request(request)
    project = await _project(conn, request.project_id)
    geography = await load_geography(conn, project.geography_id)
    try:
        cells = geography.region(request.region)
    except GeographyError as err:
        raise ReleaseRefusedError(str(err)) from None
    return make_plan(request, measures, cells)


async def prepare_release(
    conn: Connection, *, request: ReleaseRequest, requested_by: int, via: str
) -> PreparedRelease:
    """Spend the release's rho, choose and record its homes; refuse (recorded, with why) what breaks a rule.

    Everything that can refuse it runs before any data is read, and says nothing of any household.
    """
    parameters = {**request.parameters(), "via": via}
    try:
        measures = check_request(request)
        project = await _member_project(conn, request.project_id, requested_by)
        plan = await preview(conn, request=request)
        geography = await load_geography(conn, project.geography_id)
        async with conn.transaction():
            row = await conn.fetchrow(
                queries.INSERT_RELEASE,
                project.project_id,
                requested_by,
                request.kind,
                json.dumps(parameters),
                request.rho,
            )
            if row is None:
                raise RuntimeError("the release was not recorded")
            release_id, requested_at = row["release_id"], row["requested_at"]
            if request.kind == "aggregates":
                try:
                    await budget.spend(
                        conn,
                        project_id=project.project_id,
                        release_id=release_id,
                        rho=request.rho,
                        spent_by=requested_by,
                    )
                except budget.BudgetError as err:
                    raise ReleaseRefusedError(str(err)) from None
            members = await _choose_members(
                conn, request=request, measures=measures, geography=geography, cells=plan.cells
            )
            used = [(member.site_id, owner) for member in members for owner in member.owners]
            await conn.execute(
                queries.INSERT_RELEASE_HOUSEHOLDS,
                release_id,
                [site for site, _ in used],
                [owner for _, owner in used],
            )
            if request.kind == "households":
                await _record_in_access_logs(
                    conn, members, release_id=release_id, project=project, reader=requested_by
                )
    except ReleaseRefusedError as refusal:
        await conn.execute(
            queries.INSERT_REFUSED_RELEASE,
            request.project_id,
            requested_by,
            request.kind,
            json.dumps(parameters),
            refusal.reason,
        )
        log.info("research release for project %d refused: %s", request.project_id, refusal.reason)
        raise
    prepared = PreparedRelease(release_id, requested_at, project, geography, plan, members, conn, parameters)
    if request.kind == "aggregates" and plan.counts is not None:
        exact = Counter(cell for _, cell in {(member.site_id, member.cell) for member in members})
        counts = noise(plan.counts, [float(exact[cell]) for cell in plan.cells])
        prepared.noisy_counts = dict(zip(plan.cells, counts, strict=True))
    else:
        prepared.labels = _pseudonyms(len(members))
    return prepared


async def _member_project(conn: Connection, project_id: int, researcher: int) -> budget.Project:
    project = await _project(conn, project_id)
    if researcher not in project.members:
        # As for a project that does not exist: an outsider learns nothing of the projects there are.
        raise ReleaseRefusedError(f"there is no research project {project_id}")
    return project


async def _project(conn: Connection, project_id: int) -> budget.Project:
    try:
        return await budget.project(conn, project_id=project_id)
    except budget.BudgetError as err:
        raise ReleaseRefusedError(str(err)) from None


async def _choose_members(
    conn: Connection,
    *,
    request: ReleaseRequest,
    measures: list[Metric],
    geography: Geography,
    cells: list[str],
) -> list[Member]:
    """Return the release's members: homes in its cells with data, over the periods of owners who allow it.

    A period is left out by its owner's standing (no owner, a closed account, restriction, objection) and,
    for series, without their research consent; the periods of other owners of the same home are not.
    """
    start, end = _source_bounds(request)
    statement = queries.CANDIDATES_HOURLY if request.resolution in SUB_DAILY else queries.CANDIDATES_DAILY
    candidates = await conn.fetch(
        statement, start, end, [m.device_kind for m in measures], [m.name for m in measures]
    )
    wanted = set(cells)
    periods: dict[tuple[int, str], list[asyncpg.Record]] = defaultdict(list)
    for candidate in candidates:  # by home, the oldest period first
        fine = candidate["postcode_area"] if geography.scheme == "pc4" else candidate["h3_cell"]
        cell = geography.cell_of.get(fine) if fine is not None else None
        if cell in wanted:
            periods[(candidate["site_id"], cell)].append(candidate)
    members = []
    for (site_id, cell), home_periods in periods.items():
        allowed = [
            period
            for period in home_periods
            if period["excluded_by"] is None and (request.kind == "aggregates" or period["consents"])
        ]
        windows = _owners_windows(allowed, join=request.kind == "aggregates")
        members += [Member(site_id, cell, since, until, owners) for since, until, owners in windows]
    return sorted(members, key=lambda m: (m.site_id, m.since or dt.datetime.min.replace(tzinfo=dt.UTC)))


def _owners_windows(
    periods: list[asyncpg.Record], *, join: bool
) -> list[tuple[dt.datetime | None, dt.datetime | None, tuple[int, ...]]]:
    """Return windows of periods in time order: one per period, or (`join`) one per run of adjacent ones."""
    windows: list[tuple[dt.datetime | None, dt.datetime | None, tuple[int, ...]]] = []
    for period in periods:
        since, until, owner = period["started_at"], period["ended_at"], period["owner_user_id"]
        if join and windows and windows[-1][1] is not None and windows[-1][1] == since:
            first, _, owners = windows[-1]
            windows[-1] = (first, until, (*owners, owner))
        else:
            windows.append((since, until, (owner,)))
    return windows


async def _record_in_access_logs(
    conn: Connection, members: list[Member], *, release_id: int, project: budget.Project, reader: int
) -> None:
    """Put a release of per-household series in the access log of every household it holds."""
    who = audit.Reader(user_id=reader, role="researcher")
    for member in members:
        [owner] = member.owners  # a series is one owner's period
        await audit.record_read(
            conn,
            reader=who,
            subject_user_id=owner,
            site_id=member.site_id,
            resource="research_release",
            detail=f"release {release_id} of project {project.name!r}: your home's series, pseudonymised",
        )


def _pseudonyms(members: int) -> dict[int, str]:
    """Return a pseudonym per member: HMAC-SHA256 under a key made now and dropped when this returns."""
    key = secrets.token_bytes(32)
    pseudonyms = {
        member: hmac.new(key, f"member:{member}".encode(), hashlib.sha256).hexdigest()[:PSEUDONYM_HEX]
        for member in range(members)
    }
    del key  # never stored, never logged: two releases cannot be joined on their pseudonyms
    if len(set(pseudonyms.values())) != len(pseudonyms):
        return _pseudonyms(members)  # a 64-bit collision: draw a new key
    return pseudonyms


async def _close_record(
    conn: Connection,
    release_id: int,
    *,
    status: str,
    manifest: dict[str, Any] | None = None,
    reason: str | None = None,
) -> None:
    await conn.execute(
        queries.FINISH_RELEASE, release_id, status, None if manifest is None else json.dumps(manifest), reason
    )


def _describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {str(err)[:300]}" if str(err) else type(err).__name__


async def list_releases(
    conn: Connection, *, project_id: int | None, requested_by: int | None, before: int | None, limit: int
) -> list[asyncpg.Record]:
    """Return release records, newest first: of a project, a researcher's own, or everyone's (None)."""
    return list(await conn.fetch(queries.SELECT_RELEASES, project_id, requested_by, before, limit))


async def releases_of_owner(conn: Connection, *, owner_user_id: int) -> list[asyncpg.Record]:
    """Return, per home of an owner, the releases that covered it: what their privacy page adds up."""
    return list(await conn.fetch(queries.SELECT_RELEASES_OF_OWNER, owner_user_id))
