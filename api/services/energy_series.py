"""Energy per hour or per day of a site: grid import, export and solar production, with their totals."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass, field

from api.services import energy
from thuis.db import Connection

# What the charts show, from the meters: the grid connection (a Maxem grid channel, else a P1 dongle: the
# first of api.energy.GRID_KINDS the site has, so a home with both is not counted twice) and solar panels.
GRID_METRICS = {"import_energy_kwh": "import", "export_energy_kwh": "export"}
SOLAR = ("solar", "energy_kwh")
WIDTHS = {"hour": dt.timedelta(hours=1), "day": dt.timedelta(days=1)}


@dataclass
class EnergyBucket:
    """The energy of one hour or day, in kWh."""

    start: dt.datetime
    import_kwh: float = 0.0
    export_kwh: float = 0.0
    solar_kwh: float = 0.0


@dataclass
class EnergyTotals:
    """The sums over a window, and how much of the solar production the home used itself."""

    import_kwh: float
    export_kwh: float
    solar_kwh: float | None  # None: the site meters no solar production

    @property
    def self_consumption_kwh(self) -> float | None:
        """Return the solar energy used at home rather than exported."""
        if self.solar_kwh is None:
            return None
        return max(0.0, self.solar_kwh - self.export_kwh)

    @property
    def self_consumption_share(self) -> float | None:
        """Return the share of the solar production used at home (0 to 1), if there was any."""
        used = self.self_consumption_kwh
        if used is None or not self.solar_kwh:
            return None
        return used / self.solar_kwh


@dataclass
class EnergySeries:
    """The buckets of a window that hold readings, in the site's time zone, oldest first."""

    width: str  # "hour" or "day"
    start: dt.datetime
    slots: int  # buckets in the window, with or without readings
    time_zone: str
    buckets: list[EnergyBucket] = field(default_factory=list)
    has_solar: bool = False

    def slot_of(self, bucket: EnergyBucket) -> int:
        """Return the position of a bucket in the window."""
        if self.width == "day":
            return (bucket.start.date() - self.start.date()).days
        # Aware datetimes of one zone subtract as wall-clock times; in UTC they subtract as instants.
        return int((bucket.start.astimezone(dt.UTC) - self.start.astimezone(dt.UTC)) / WIDTHS["hour"])

    def totals(self) -> EnergyTotals:
        """Return the window's totals."""
        return EnergyTotals(
            import_kwh=sum(b.import_kwh for b in self.buckets),
            export_kwh=sum(b.export_kwh for b in self.buckets),
            solar_kwh=sum(b.solar_kwh for b in self.buckets) if self.has_solar else None,
        )


def hourly_window(now: dt.datetime, *, hours: int, time_zone: str) -> tuple[dt.datetime, dt.datetime]:
    """Return the last `hours` whole hours up to and including the current one, in the site's zone."""
    zone = zoneinfo.ZoneInfo(time_zone)
    end = now.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1)
    return (end - dt.timedelta(hours=hours)).astimezone(zone), end.astimezone(zone)


def daily_window(now: dt.datetime, *, days: int, time_zone: str) -> tuple[dt.datetime, dt.datetime]:
    """Return the last `days` local calendar days up to and including today, as instants."""
    zone = zoneinfo.ZoneInfo(time_zone)
    today = now.astimezone(zone).date()
    start = dt.datetime.combine(today - dt.timedelta(days=days - 1), dt.time(), tzinfo=zone)
    end = dt.datetime.combine(today + dt.timedelta(days=1), dt.time(), tzinfo=zone)
    return start, end


async def hourly_energy(
    conn: Connection, *, site_id: int, start: dt.datetime, end: dt.datetime, time_zone: str
) -> EnergySeries:
    """Return the site's energy per hour in [start, end), read from the hourly rollups."""
    points = await energy.hourly_series(conn, site_id=site_id, start=start, end=end)
    zone = zoneinfo.ZoneInfo(time_zone)
    slots = int((end.astimezone(dt.UTC) - start.astimezone(dt.UTC)) / WIDTHS["hour"])
    series = EnergySeries(width="hour", start=start, slots=slots, time_zone=time_zone)
    _fold(
        series,
        [(p.hour.astimezone(zone), p.device_kind, p.metric, p.value, p.is_consumption) for p in points],
    )
    return series


async def daily_energy(
    conn: Connection, *, site_id: int, start: dt.datetime, end: dt.datetime, time_zone: str
) -> EnergySeries:
    """Return the site's energy per local day from start's day to the day before end's, from the rollups."""
    points = await energy.daily_series(
        conn, site_id=site_id, start=start.date(), end=end.date(), time_zone=time_zone
    )
    zone = zoneinfo.ZoneInfo(time_zone)
    slots = (end.date() - start.date()).days
    series = EnergySeries(width="day", start=start, slots=slots, time_zone=time_zone)
    _fold(
        series,
        [
            (
                dt.datetime.combine(p.day, dt.time(), tzinfo=zone),
                p.device_kind,
                p.metric,
                p.value,
                p.is_consumption,
            )
            for p in points
        ],
    )
    return series


def _fold(series: EnergySeries, points: list[tuple[dt.datetime, str, str, float, bool]]) -> None:
    """Add the meters' consumption per bucket to the series: grid import and export, solar production."""
    kinds = {kind for _, kind, _, _, _ in points}
    grid_kind = next((kind for kind in energy.GRID_KINDS if kind in kinds), None)
    by_start: dict[dt.datetime, EnergyBucket] = {}
    for moment, kind, metric, value, is_consumption in points:
        if not is_consumption:
            continue
        if kind == grid_kind and metric in GRID_METRICS:
            role = GRID_METRICS[metric]
        elif (kind, metric) == SOLAR:
            role = "solar"
            series.has_solar = True
        else:
            continue
        bucket = by_start.setdefault(moment, EnergyBucket(start=moment))
        kwh = max(0.0, value)  # a replaced meter restarts at zero
        setattr(bucket, f"{role}_kwh", getattr(bucket, f"{role}_kwh") + kwh)
    series.buckets = [by_start[moment] for moment in sorted(by_start)]
