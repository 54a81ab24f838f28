"""A site's energy, computed once for the JSON API and the pages: series, buckets, totals and summaries.

Every figure comes from the hourly and daily rollups through three rules, each applied in one place
(docs/portal.md, "Energy", says the same):

1. **A meter's advance in a bucket** (`meter_advance`, per device, before the devices of a kind are summed):
   its last reading minus the reading it started the bucket at (the last one of the bucket before, else the
   last one before the window, else its lowest reading in the bucket: a meter's first bucket counts from its
   first reading). A bucket that ends below its start holds a replaced meter that restarted near zero: it
   counts the old meter's advance up to its last reading (its highest reading in the bucket minus the start,
   if above it) plus the new meter's own advance from its first reading (the last reading minus the lowest).
   So no bucket is negative, and a replacement adds no more than the two meters advanced; what the new
   meter counted before its first reading is not seen, nor a replacement within a meter's very first bucket.
2. **The grid meter, per bucket** (`bucket_energy`): grid import and export come from the first of
   `GRID_KINDS` that reported import or export in that bucket — a Maxem grid channel, else a P1 dongle —
   never from both, as they measure the same connection. Per bucket rather than per window, so a bucket's
   figures depend on its own readings only: a day has the same figures whatever window it is asked in (one
   day from the API, the page's 30 days or year), and a month is the sum of its days. Chosen per window, a
   day's import would change with the window asked whenever one of the meters is missing from part of it
   (a P1 dongle's days before the Maxem was installed would count or not). The cost: in the one bucket in
   which the preferred meter starts or stops reporting, only its own part of that bucket counts, so on such
   a day the hours (each chosen on its own) can add up to more than the day.
3. **Derived figures** (`Energy`): self-consumption (solar - export) and consumption (import + solar -
   export) are computed from the sums of the bucket or period they describe, never below 0.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import astuple, dataclass, field
from typing import Any, Literal, TypeVar

import asyncpg

from api.queries import energy as queries
from api.services.access import Window
from thuis.db import Connection
from thuis.metrics import GRID_EXPORT, GRID_IMPORT, GRID_METER_KINDS, is_meter

Resolution = Literal["day", "month"]
Width = Literal["hour", "day"]
# Where grid import and export come from, in order of preference (rule 2 of the module's docstring): the
# metric catalogue's grid meters.
GRID_KINDS = GRID_METER_KINDS
IMPORT, EXPORT, ENERGY = GRID_IMPORT, GRID_EXPORT, "energy_kwh"
HOUR = dt.timedelta(hours=1)
Key = TypeVar("Key", bound=Hashable)


@dataclass(frozen=True, slots=True)
class HourlyPoint:
    """One hour (UTC) of one device kind's metric: consumption for meter readings, else the mean."""

    hour: dt.datetime
    device_kind: str
    metric: str
    value: float
    is_consumption: bool


@dataclass(frozen=True, slots=True)
class DailyPoint:
    """One local day of one device kind's metric: consumption for meter readings, else the mean."""

    day: dt.date
    device_kind: str
    metric: str
    value: float
    is_consumption: bool


@dataclass(frozen=True, slots=True)
class Energy:
    """The energy of a bucket or a period (kWh): from and to the grid, solar, EV and heat pump."""

    import_kwh: float = 0.0
    export_kwh: float = 0.0
    solar_kwh: float = 0.0
    ev_kwh: float = 0.0
    heat_pump_kwh: float = 0.0

    @property
    def self_consumption_kwh(self) -> float:
        """Return the solar energy used at home rather than exported."""
        return max(0.0, self.solar_kwh - self.export_kwh)

    @property
    def consumption_kwh(self) -> float:
        """Return the energy the home used: from the grid and the panels, less what went back."""
        return max(0.0, self.import_kwh + self.solar_kwh - self.export_kwh)

    @property
    def self_consumption_share(self) -> float | None:
        """Return the share of the solar production used at home (0 to 1), if there was any."""
        return self.self_consumption_kwh / self.solar_kwh if self.solar_kwh > 0 else None


@dataclass(frozen=True, slots=True)
class EnergySummary:
    """Energy of one day or month (kWh): what came from the grid, went back, was produced and used."""

    period: dt.date  # the day, or the first day of the month
    import_kwh: float
    export_kwh: float
    solar_kwh: float
    self_consumption_kwh: float
    consumption_kwh: float
    ev_kwh: float
    heat_pump_kwh: float


@dataclass(frozen=True, slots=True)
class EnergyBucket:
    """The energy of one hour or local day of a chart, starting at `start` in the chart's time zone."""

    start: dt.datetime
    energy: Energy


@dataclass(frozen=True, slots=True)
class EnergySeries:
    """The buckets of a window that hold readings, in the site's time zone, oldest first."""

    width: Width
    start: dt.datetime
    slots: int  # buckets in the window, with or without readings
    buckets: list[EnergyBucket] = field(default_factory=list)
    has_solar: bool = False

    def slot_of(self, bucket: EnergyBucket) -> int:
        """Return the position of a bucket in the window."""
        if self.width == "day":
            return (bucket.start.date() - self.start.date()).days
        # Aware datetimes of one zone subtract as wall-clock times; in UTC they subtract as instants.
        return int((bucket.start.astimezone(dt.UTC) - self.start.astimezone(dt.UTC)) / HOUR)

    def totals(self) -> Energy:
        """Return the window's totals."""
        return total_energy(bucket.energy for bucket in self.buckets)


class UnknownSiteError(LookupError):
    """The site does not exist."""


def meter_advance(*, start: float | None, lowest: float, highest: float, last: float) -> float:
    """Return a meter's consumption in a bucket from its readings there (rule 1): never negative."""
    if start is None:
        return last - lowest
    if last >= start:
        return last - start
    return max(0.0, highest - start) + (last - lowest)


def bucket_energy(meters: Mapping[tuple[str, str], float]) -> Energy:
    """Return a bucket's energy from its meters' consumption by device kind and metric (rule 2)."""
    grid = next((kind for kind in GRID_KINDS if (kind, IMPORT) in meters or (kind, EXPORT) in meters), None)
    return Energy(
        import_kwh=meters.get((grid, IMPORT), 0.0) if grid else 0.0,
        export_kwh=meters.get((grid, EXPORT), 0.0) if grid else 0.0,
        solar_kwh=meters.get(("solar", ENERGY), 0.0),
        ev_kwh=meters.get(("ev", ENERGY), 0.0),
        heat_pump_kwh=meters.get(("heat_pump", ENERGY), 0.0),
    )


def total_energy(energies: Iterable[Energy]) -> Energy:
    """Add up the energy of buckets."""
    return Energy(*map(sum, zip(*map(astuple, energies), strict=True)))


def energy_by_bucket(points: Iterable[tuple[Key, str, str, float, bool]]) -> dict[Key, Energy]:
    """Return the energy of each bucket of (bucket, device kind, metric, value, is consumption) points."""
    meters: dict[Key, dict[tuple[str, str], float]] = defaultdict(dict)
    for bucket, kind, metric, value, is_consumption in points:
        if is_consumption:
            meters[bucket][(kind, metric)] = value
    return {bucket: bucket_energy(by_meter) for bucket, by_meter in meters.items()}


async def hourly_series(
    conn: Connection, *, site_id: int, start: dt.datetime, end: dt.datetime, windows: Sequence[Window]
) -> list[HourlyPoint]:
    """Return per UTC hour in [start, end) and per device kind and metric the site's consumption or mean.

    Only the hours that lie wholly in one of `windows` (the reader's time: api/services/access.py), each
    window computed from its own readings alone.
    """
    records = []
    for since, until in windows:
        if (since is None or since < end) and (until is None or until > start):
            records += await conn.fetch(queries.HOURLY_SERIES, site_id, start, end, since, until)
    return [HourlyPoint(*point) for point in _points(records)]


async def daily_series(
    conn: Connection,
    *,
    site_id: int,
    start: dt.date,
    end: dt.date,
    time_zone: str,
    windows: Sequence[Window],
) -> list[DailyPoint]:
    """Return per local day in [start, end) of `time_zone` and per device kind and metric the values.

    Days in the site's own time zone come from the daily rollups, those that lie wholly in one of `windows`
    (the reader's time); in another zone they are summed from the hourly rollups in the windows (exact for
    zones with whole-hour offsets).
    """
    site_zone = await conn.fetchval(queries.SITE_TIME_ZONE, site_id)
    if site_zone is None:
        raise UnknownSiteError(f"no site {site_id}")
    records = []
    for since, until in windows:
        if site_zone == time_zone:
            records += await conn.fetch(queries.DAILY_SERIES, site_id, start, end, since, until, site_zone)
        else:
            records += await conn.fetch(
                queries.DAILY_SERIES_FROM_HOURLY, site_id, start, end, time_zone, since, until
            )
    return [DailyPoint(*point) for point in _points(records)]


async def hourly_series_raw(
    conn: Connection, *, site_id: int, start: dt.datetime, end: dt.datetime
) -> list[HourlyPoint]:
    """Compute `hourly_series` from the raw readings (time_bucket): for benchmarks and checks."""
    records = await conn.fetch(queries.HOURLY_SERIES_RAW, site_id, start, end)
    return [HourlyPoint(*point) for point in _points(records)]


async def daily_series_raw(
    conn: Connection, *, site_id: int, start: dt.date, end: dt.date, time_zone: str
) -> list[DailyPoint]:
    """Compute `daily_series` from the raw readings (time_bucket in `time_zone`): for benchmarks, checks."""
    records = await conn.fetch(queries.DAILY_SERIES_RAW, site_id, start, end, time_zone)
    return [DailyPoint(*point) for point in _points(records)]


async def energy_summary(
    conn: Connection,
    *,
    site_id: int,
    start: dt.date,
    end: dt.date,
    time_zone: str,
    resolution: Resolution,
    windows: Sequence[Window],
) -> list[EnergySummary]:
    """Return import, export, solar, self-consumption, consumption, EV and heat pump per day or month."""
    points = await daily_series(
        conn, site_id=site_id, start=start, end=end, time_zone=time_zone, windows=windows
    )
    return summarise(points, resolution=resolution)


def summarise(points: Iterable[DailyPoint], *, resolution: Resolution) -> list[EnergySummary]:
    """Fold daily points into per-day or per-month energy figures, in period order."""
    days = energy_by_bucket((p.day, p.device_kind, p.metric, p.value, p.is_consumption) for p in points)
    periods: dict[dt.date, list[Energy]] = defaultdict(list)
    for day, energy in days.items():
        periods[day if resolution == "day" else day.replace(day=1)].append(energy)
    return [_summary(period, total_energy(energies)) for period, energies in sorted(periods.items())]


def hourly_window(now: dt.datetime, *, hours: int, time_zone: str) -> tuple[dt.datetime, dt.datetime]:
    """Return the last `hours` whole hours up to and including the current one, in the site's zone."""
    zone = zoneinfo.ZoneInfo(time_zone)
    end = now.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0) + HOUR
    return (end - hours * HOUR).astimezone(zone), end.astimezone(zone)


def daily_window(now: dt.datetime, *, days: int, time_zone: str) -> tuple[dt.datetime, dt.datetime]:
    """Return the last `days` local calendar days up to and including today, as instants."""
    zone = zoneinfo.ZoneInfo(time_zone)
    today = now.astimezone(zone).date()
    start = dt.datetime.combine(today - dt.timedelta(days=days - 1), dt.time(), tzinfo=zone)
    end = dt.datetime.combine(today + dt.timedelta(days=1), dt.time(), tzinfo=zone)
    return start, end


async def hourly_energy(
    conn: Connection,
    *,
    site_id: int,
    start: dt.datetime,
    end: dt.datetime,
    time_zone: str,
    windows: Sequence[Window],
) -> EnergySeries:
    """Return the site's energy per hour in [start, end) in the reader's windows, for a chart."""
    points = await hourly_series(conn, site_id=site_id, start=start, end=end, windows=windows)
    zone = zoneinfo.ZoneInfo(time_zone)
    hours = energy_by_bucket((p.hour, p.device_kind, p.metric, p.value, p.is_consumption) for p in points)
    return EnergySeries(
        width="hour",
        start=start,
        slots=int((end.astimezone(dt.UTC) - start.astimezone(dt.UTC)) / HOUR),
        buckets=[EnergyBucket(hour.astimezone(zone), energy) for hour, energy in sorted(hours.items())],
        has_solar=_has_solar(points),
    )


async def daily_energy(
    conn: Connection,
    *,
    site_id: int,
    start: dt.datetime,
    end: dt.datetime,
    time_zone: str,
    windows: Sequence[Window],
) -> EnergySeries:
    """Return the site's energy per local day from start's day to the day before end's, for a chart."""
    points = await daily_series(
        conn, site_id=site_id, start=start.date(), end=end.date(), time_zone=time_zone, windows=windows
    )
    zone = zoneinfo.ZoneInfo(time_zone)
    days = energy_by_bucket((p.day, p.device_kind, p.metric, p.value, p.is_consumption) for p in points)
    return EnergySeries(
        width="day",
        start=start,
        slots=(end.date() - start.date()).days,
        buckets=[
            EnergyBucket(dt.datetime.combine(day, dt.time(), tzinfo=zone), energy)
            for day, energy in sorted(days.items())
        ],
        has_solar=_has_solar(points),
    )


def _has_solar(points: Iterable[HourlyPoint | DailyPoint]) -> bool:
    return any((p.device_kind, p.metric) == ("solar", ENERGY) and p.is_consumption for p in points)


def _summary(period: dt.date, energy: Energy) -> EnergySummary:
    return EnergySummary(
        period=period,
        import_kwh=energy.import_kwh,
        export_kwh=energy.export_kwh,
        solar_kwh=energy.solar_kwh,
        self_consumption_kwh=energy.self_consumption_kwh,
        consumption_kwh=energy.consumption_kwh,
        ev_kwh=energy.ev_kwh,
        heat_pump_kwh=energy.heat_pump_kwh,
    )


def _points(records: Iterable[asyncpg.Record]) -> list[tuple[Any, str, str, float, bool]]:
    """Sum per bucket, device kind and metric the devices' consumption (meters) or mean (the rest)."""
    values: dict[tuple[Any, str, str], float] = {}
    for record in records:
        metric: str = record["metric"]
        if is_meter(metric):
            value = meter_advance(
                start=record["start_value"],
                lowest=record["min_value"],
                highest=record["max_value"],
                last=record["last_value"],
            )
        else:
            value = record["mean_value"]
        key = (record["bucket"], record["device_kind"], metric)
        values[key] = values.get(key, 0.0) + value
    return [(*key, value, is_meter(key[2])) for key, value in values.items()]
