"""Energy charts of a site: hourly and daily series and the energy summary, read from the rollups."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg

from api.queries import energy as queries
from thuis.db import Connection
from thuis.metrics import is_meter

Resolution = Literal["day", "month"]
# Where the grid import and export come from: a Maxem grid channel when the site has one, else the P1 meter.
GRID_KINDS = ("grid", "p1meter")


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
class EnergySummary:
    """Energy of one day or month (kWh): what came from the grid, went back, was produced and used."""

    period: dt.date  # the day, or the first day of the month
    import_kwh: float
    export_kwh: float
    solar_kwh: float
    self_consumption_kwh: float  # solar used at home: solar minus export, never below 0
    consumption_kwh: float  # import + solar - export
    ev_kwh: float
    heat_pump_kwh: float


class UnknownSiteError(LookupError):
    """The site does not exist."""


async def hourly_series(
    conn: Connection, *, site_id: int, start: dt.datetime, end: dt.datetime
) -> list[HourlyPoint]:
    """Return per UTC hour in [start, end) and per device kind and metric the site's consumption or mean."""
    records = await conn.fetch(queries.HOURLY_SERIES, site_id, start, end)
    return [HourlyPoint(*_point(record)) for record in records]


async def daily_series(
    conn: Connection, *, site_id: int, start: dt.date, end: dt.date, time_zone: str
) -> list[DailyPoint]:
    """Return per local day in [start, end) of `time_zone` and per device kind and metric the values.

    Days in the site's own time zone come from the daily rollups; in another zone they are summed from
    the hourly rollups (exact for zones with whole-hour offsets).
    """
    site_zone = await conn.fetchval(queries.SITE_TIME_ZONE, site_id)
    if site_zone is None:
        raise UnknownSiteError(f"no site {site_id}")
    if site_zone == time_zone:
        records = await conn.fetch(queries.DAILY_SERIES, site_id, start, end)
    else:
        records = await conn.fetch(queries.DAILY_SERIES_FROM_HOURLY, site_id, start, end, time_zone)
    return [DailyPoint(*_point(record)) for record in records]


async def energy_summary(
    conn: Connection,
    *,
    site_id: int,
    start: dt.date,
    end: dt.date,
    time_zone: str,
    resolution: Resolution,
) -> list[EnergySummary]:
    """Return import, export, solar, self-consumption, consumption, EV and heat pump per day or month."""
    points = await daily_series(conn, site_id=site_id, start=start, end=end, time_zone=time_zone)
    return summarise(points, resolution=resolution)


async def hourly_series_raw(
    conn: Connection, *, site_id: int, start: dt.datetime, end: dt.datetime
) -> list[HourlyPoint]:
    """Compute `hourly_series` from the raw readings (time_bucket): for benchmarks and checks."""
    records = await conn.fetch(queries.HOURLY_SERIES_RAW, site_id, start, end)
    return [HourlyPoint(*_point(record)) for record in records]


async def daily_series_raw(
    conn: Connection, *, site_id: int, start: dt.date, end: dt.date, time_zone: str
) -> list[DailyPoint]:
    """Compute `daily_series` from the raw readings (time_bucket in `time_zone`): for benchmarks, checks."""
    records = await conn.fetch(queries.DAILY_SERIES_RAW, site_id, start, end, time_zone)
    return [DailyPoint(*_point(record)) for record in records]


def summarise(points: Iterable[DailyPoint], *, resolution: Resolution) -> list[EnergySummary]:
    """Fold daily points into per-day or per-month energy figures, in period order."""
    periods: dict[dt.date, dict[tuple[str, str], float]] = defaultdict(lambda: defaultdict(float))
    for point in points:
        if not point.is_consumption:
            continue
        period = point.day if resolution == "day" else point.day.replace(day=1)
        periods[period][(point.device_kind, point.metric)] += point.value
    return [_summary(period, energy) for period, energy in sorted(periods.items())]


def _summary(period: dt.date, energy: dict[tuple[str, str], float]) -> EnergySummary:
    grid_kind = next(
        (
            kind
            for kind in GRID_KINDS
            if (kind, "import_energy_kwh") in energy or (kind, "export_energy_kwh") in energy
        ),
        GRID_KINDS[0],
    )
    imported = energy.get((grid_kind, "import_energy_kwh"), 0.0)
    exported = energy.get((grid_kind, "export_energy_kwh"), 0.0)
    solar = energy.get(("solar", "energy_kwh"), 0.0)
    return EnergySummary(
        period=period,
        import_kwh=imported,
        export_kwh=exported,
        solar_kwh=solar,
        self_consumption_kwh=max(solar - exported, 0.0),
        consumption_kwh=imported + solar - exported,
        ev_kwh=energy.get(("ev", "energy_kwh"), 0.0),
        heat_pump_kwh=energy.get(("heat_pump", "energy_kwh"), 0.0),
    )


def _point(record: asyncpg.Record) -> tuple[Any, str, str, float, bool]:
    metric: str = record["metric"]
    meter = is_meter(metric)
    value = record["consumption"] if meter else record["mean_value"]
    return record["bucket"], record["device_kind"], metric, float(value), meter
