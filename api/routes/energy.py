"""A site's energy: hourly and daily series and the day or month summary, read from the rollups."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

from api.deps import ConnDep, SignedIn, VisibleSite
from api.problems import PROBLEM_RESPONSES, Problem
from api.services import energy
from api.services.access import record_read, user_time_zone

router = APIRouter(prefix="/api/v1/sites/{site_id}/energy", responses=PROBLEM_RESPONSES, tags=["energy"])

MAX_HOURLY = dt.timedelta(days=31)
MAX_DAYS = 3 * 366


class EnergyPoint(BaseModel):
    """One bucket of one device kind's metric: consumption (kWh, m³) for meter readings, else the mean."""

    time: dt.datetime | dt.date
    device_kind: str
    metric: str
    value: float
    is_consumption: bool


class EnergyPeriod(BaseModel):
    """Energy of one day or month (kWh)."""

    period: dt.date
    import_kwh: float
    export_kwh: float
    solar_kwh: float
    self_consumption_kwh: float
    consumption_kwh: float
    ev_kwh: float
    heat_pump_kwh: float


def _point(time: dt.datetime | dt.date, point: energy.HourlyPoint | energy.DailyPoint) -> EnergyPoint:
    return EnergyPoint(
        time=time,
        device_kind=point.device_kind,
        metric=point.metric,
        value=point.value,
        is_consumption=point.is_consumption,
    )


def _days(start: dt.date, end: dt.date) -> None:
    if start >= end:
        raise Problem(422, "query parameter start: must be before end")
    if (end - start).days > MAX_DAYS:
        raise Problem(422, f"query parameter start: at most {MAX_DAYS} days at a time")


@router.get("/hourly", summary="Energy per hour")
async def hourly(
    site: VisibleSite, principal: SignedIn, conn: ConnDep, start: dt.datetime, end: dt.datetime
) -> list[EnergyPoint]:
    """Return per hour in [start, end) (at most 31 days) and per device kind and metric the energy."""
    if start.tzinfo is None or end.tzinfo is None:
        raise Problem(422, "query parameters start and end: give times with an offset")
    if start >= end:
        raise Problem(422, "query parameter start: must be before end")
    if end - start > MAX_HOURLY:
        raise Problem(422, "query parameter start: at most 31 days of hours at a time")
    points = await energy.hourly_series(
        conn, site_id=site.site_id, start=start, end=end, windows=site.windows
    )
    await record_read(conn, principal=principal, access=site, resource="energy")
    return [_point(p.hour, p) for p in points]


@router.get("/daily", summary="Energy per day")
async def daily(
    site: VisibleSite, principal: SignedIn, conn: ConnDep, start: dt.date, end: dt.date
) -> list[EnergyPoint]:
    """Return per day in [start, end) of the user's time zone and per device kind and metric the energy."""
    _days(start, end)
    zone = await user_time_zone(conn, principal=principal, access=site)
    points = await energy.daily_series(
        conn, site_id=site.site_id, start=start, end=end, time_zone=zone, windows=site.windows
    )
    await record_read(conn, principal=principal, access=site, resource="energy")
    return [_point(p.day, p) for p in points]


@router.get("/summary", summary="Import, export, solar, self-consumption, EV and heat pump per day or month")
async def summary(
    site: VisibleSite,
    principal: SignedIn,
    conn: ConnDep,
    *,
    start: dt.date,
    end: dt.date,
    resolution: Literal["day", "month"] = "day",
) -> list[EnergyPeriod]:
    """Return the energy summary of each day or month in [start, end) of the user's time zone."""
    _days(start, end)
    zone = await user_time_zone(conn, principal=principal, access=site)
    periods = await energy.energy_summary(
        conn,
        site_id=site.site_id,
        start=start,
        end=end,
        time_zone=zone,
        resolution=resolution,
        windows=site.windows,
    )
    await record_read(conn, principal=principal, access=site, resource="energy")
    return [EnergyPeriod.model_validate(period, from_attributes=True) for period in periods]
