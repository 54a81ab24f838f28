"""Pages of sites: the list, a site's energy and devices, its installers and access log; an installer's."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Annotated

from fastapi import APIRouter, Form, Path, Query, Request, Response

from api.deps import MAX_ID, ConnDep, OwnedSite, SignedIn, VisibleSite
from api.problems import Problem
from api.security import Principal
from api.services import sharing, sites
from api.services.access import (
    SiteAccess,
    installer_assignments,
    preferred_time_zone,
    record_read,
    user_time_zone,
    visible_sites,
)
from api.services.energy import daily_energy, daily_window, hourly_energy, hourly_window
from api.services.sites import MAX_DEVICES_SHOWN
from api.web.charts import energy_chart
from api.web.render import DEFAULT_TIME_ZONE, PageRoute, error_page, local_end, page, redirect
from thuis.db import Connection

router = APIRouter(route_class=PageRoute, include_in_schema=False)

CHART_HOURS = 7 * 24
DAILY_RANGES = {30: "Last 30 days", 365: "Last year"}
ACCESS_LOG_PAGE = 50


@router.get("/")
async def home(request: Request, principal: SignedIn, conn: ConnDep) -> Response:
    """List the sites the person may see; one site goes to its page; other roles go to their own pages."""
    if principal.role == "installer":
        return redirect("/installer")
    if principal.role == "privacy_officer":
        return redirect("/privacy/queue")
    if principal.role == "researcher":  # sees no home: their start page is their research
        return redirect("/research")
    visible = await visible_sites(conn, principal=principal)
    if len(visible) == 1:
        return redirect(f"/sites/{visible[0].site_id}")
    for access in visible:
        await record_read(conn, principal=principal, access=access, resource="site")
    return page(request, "home.html", principal=principal, sites=visible)


@router.get("/sites/{site_id}")
async def site_dashboard(
    request: Request,
    site: VisibleSite,
    principal: SignedIn,
    conn: ConnDep,
    days: Annotated[int, Query()] = 30,
) -> Response:
    """Show a site's energy per hour (7 days) and per day (30 days or a year), totals and devices."""
    if days not in DAILY_RANGES:
        days = 30  # a hand-edited address gets the default period rather than an error
    now = dt.datetime.now(dt.UTC)
    site_id = site.site_id
    # Days and hours as the person reading them lives them: their display preference, else the site's.
    zone = await user_time_zone(conn, principal=principal, access=site)
    hour_start, hour_end = hourly_window(now, hours=CHART_HOURS, time_zone=zone)
    hourly = await hourly_energy(
        conn, site_id=site_id, start=hour_start, end=hour_end, time_zone=zone, windows=site.windows
    )
    day_start, day_end = daily_window(now, days=days, time_zone=zone)
    daily = await daily_energy(
        conn, site_id=site_id, start=day_start, end=day_end, time_zone=zone, windows=site.windows
    )
    for resource in ("site", "readings"):
        await record_read(conn, principal=principal, access=site, resource=resource)
    devices = await sites.devices_with_vendor(conn, principal=principal, access=site)
    return page(
        request,
        "site.html",
        principal=principal,
        site=site,
        tab="energy",
        hourly=energy_chart(hourly),
        daily=energy_chart(daily),
        days=days,
        daily_ranges=DAILY_RANGES,
        devices=devices,
        more_devices=len(devices) == MAX_DEVICES_SHOWN,
    )


@router.get("/sites/{site_id}/installers")
async def installers(
    request: Request,
    site: OwnedSite,
    principal: SignedIn,
    conn: ConnDep,
    assigned: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    revoked: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> Response:
    """Show the site's installer assignments, running and past, with the forms to assign and revoke.

    After a form, `assigned` or `revoked` names the assignment it changed; the notice is written from the
    database row, so a link cannot put words of its own on the owner's page.
    """
    return await _installers_page(request, principal, conn, site, assigned=assigned, revoked=revoked)


async def _installers_page(
    request: Request,
    principal: Principal,
    conn: Connection,
    access: SiteAccess,
    *,
    assigned: int | None = None,
    revoked: int | None = None,
    error: str = "",
    status_code: int = 200,
    form: dict[str, str] | None = None,
) -> Response:
    assignments = await sharing.assignment_rows(conn, access=access, include_ended=True)
    today = dt.datetime.now(zoneinfo.ZoneInfo(access.time_zone)).date()
    notice = ""
    for row in assignments:
        if row["assignment_id"] == assigned:
            notice = f"Assigned {row['username']} until {local_end(row['expires_at'], access.time_zone)}."
        elif row["assignment_id"] == revoked and row["revoked_at"] is not None:
            notice = (
                f"Revoked the assignment of {row['username']}: from now on they see nothing of this home."
            )
    return page(
        request,
        "installers.html",
        principal=principal,
        status_code=status_code,
        site=access,
        tab="installers",
        assignments=assignments,
        notice=notice,
        error=error,
        form=form or {"installer_username": "", "expires_on": str(today + dt.timedelta(days=14))},
        min_date=str(today),
        max_date=str(today + sharing.MAX_ASSIGNMENT - dt.timedelta(days=1)),
    )


@router.post("/sites/{site_id}/installers")
async def assign_installer(
    request: Request,
    site: OwnedSite,
    principal: SignedIn,
    conn: ConnDep,
    installer_username: Annotated[str, Form(max_length=64)] = "",
    expires_on: Annotated[str, Form(max_length=32)] = "",
) -> Response:
    """Assign an installer until the end of the chosen day (in the site's time zone)."""
    form = {"installer_username": installer_username, "expires_on": expires_on}
    try:
        async with conn.transaction():
            assignment_id = await sharing.assign_installer(
                conn,
                site_id=site.site_id,
                owner_user_id=principal.user_id,
                installer_username=installer_username,
                expires_at=_end_of_day(expires_on, site.time_zone),
                username_field="installer",
                expires_field="until",
            )
    except Problem as problem:
        if problem.status != 422:  # only invalid input re-renders the form
            raise
        return await _installers_page(
            request, principal, conn, site, error=problem.detail, status_code=422, form=form
        )
    return redirect(f"/sites/{site.site_id}/installers?assigned={assignment_id}")


@router.post("/sites/{site_id}/installers/{assignment_id}/revoke")
async def revoke_installer(
    site: OwnedSite, conn: ConnDep, assignment_id: Annotated[int, Path(ge=1, le=MAX_ID)]
) -> Response:
    """End an installer's assignment at once."""
    await sharing.revoke_assignment(conn, site_id=site.site_id, assignment_id=assignment_id)
    return redirect(f"/sites/{site.site_id}/installers?revoked={assignment_id}")


def _end_of_day(day: str, time_zone: str) -> dt.datetime:
    """Return the end of a YYYY-MM-DD day in a zone: the assignment runs through that day."""
    try:
        date = dt.date.fromisoformat(day)
    except ValueError:
        raise Problem(422, "until: give a date as YYYY-MM-DD") from None
    return dt.datetime.combine(date + dt.timedelta(days=1), dt.time(), tzinfo=zoneinfo.ZoneInfo(time_zone))


@router.get("/sites/{site_id}/access-log")
async def access_log(
    request: Request, site: OwnedSite, principal: SignedIn, conn: ConnDep, before: dt.datetime | None = None
) -> Response:
    """Show who read the site's personal data, newest first, a page at a time."""
    if before is not None and before.tzinfo is None:
        before = before.replace(tzinfo=dt.UTC)
    rows = await sharing.access_log_rows(conn, access=site, before=before, limit=ACCESS_LOG_PAGE + 1)
    records = rows[:ACCESS_LOG_PAGE]
    older = records[-1]["occurred_at"].isoformat() if len(rows) > ACCESS_LOG_PAGE else None
    return page(
        request,
        "access_log.html",
        principal=principal,
        site=site,
        tab="access-log",
        records=records,
        older=older,
    )


@router.get("/installer")
async def installer_sites(request: Request, principal: SignedIn, conn: ConnDep) -> Response:
    """Show an installer the sites they are assigned to now, the soonest to end first."""
    if principal.role != "installer":
        return error_page(request, 403, "this page is for installers only", principal)
    assignments = await installer_assignments(conn, principal=principal)
    zone = await preferred_time_zone(conn, principal=principal)
    return page(
        request,
        "installer.html",
        principal=principal,
        assignments=assignments,
        time_zone=zone or DEFAULT_TIME_ZONE,
    )
