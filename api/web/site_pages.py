"""Pages of sites: the list, a site's energy and devices, its installers and access log; an installer's."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Annotated, TypeAlias

from fastapi import APIRouter, Depends, Form, Path, Query, Request, Response

from api.params import MAX_ID, Id
from api.problems import Problem
from api.queries import portal as queries
from api.queries import web as web_queries
from api.security import Principal, optional_principal, pool_of
from api.services import sharing as sharing_rules
from api.services.access import (
    installer_assignments,
    owned_site,
    record_read,
    site_access,
    user_time_zone,
    visible_sites,
)
from api.services.energy import daily_energy, daily_window, hourly_energy, hourly_window
from api.web.charts import energy_chart
from api.web.render import PageRoute, error_page, local_end, page, redirect

router = APIRouter(route_class=PageRoute, include_in_schema=False)

SiteId: TypeAlias = Id
DEFAULT_TIME_ZONE = "Europe/Amsterdam"
CHART_HOURS = 7 * 24
DAILY_RANGES = {30: "Last 30 days", 365: "Last year"}
MAX_DEVICES_SHOWN = 200
ACCESS_LOG_PAGE = 50


async def signed_in(principal: Annotated[Principal | None, Depends(optional_principal)]) -> Principal:
    """Return the signed-in person; the page route sends anyone else to the sign-in page."""
    if principal is None:
        raise Problem(401, "sign in first")
    return principal


SignedIn = Annotated[Principal, Depends(signed_in)]


@router.get("/")
async def home(request: Request, principal: SignedIn) -> Response:
    """List the sites the person may see; one site goes to its page, installer and officer to their own."""
    if principal.role == "installer":
        return redirect("/installer")
    if principal.role == "privacy_officer":
        return redirect("/privacy/queue")
    async with pool_of(request).acquire() as conn:
        sites = await visible_sites(conn, principal=principal)
        if len(sites) == 1:
            return redirect(f"/sites/{sites[0].site_id}")
        for access in sites:
            await record_read(conn, principal=principal, access=access, resource="site")
    return page(request, "home.html", principal=principal, sites=sites)


@router.get("/sites/{site_id}")
async def site_dashboard(
    request: Request,
    principal: SignedIn,
    site_id: SiteId,
    days: Annotated[int, Query()] = 30,
) -> Response:
    """Show a site's energy per hour (7 days) and per day (30 days or a year), totals and devices."""
    if days not in DAILY_RANGES:
        days = 30  # a hand-edited address gets the default period rather than an error
    now = dt.datetime.now(dt.UTC)
    async with pool_of(request).acquire() as conn:
        access = await site_access(conn, principal=principal, site_id=site_id)
        # Days and hours as the person reading them lives them: their display preference, else the site's.
        zone = await user_time_zone(conn, principal=principal, access=access)
        hour_start, hour_end = hourly_window(now, hours=CHART_HOURS, time_zone=zone)
        hourly = await hourly_energy(conn, site_id=site_id, start=hour_start, end=hour_end, time_zone=zone)
        day_start, day_end = daily_window(now, days=days, time_zone=zone)
        daily = await daily_energy(conn, site_id=site_id, start=day_start, end=day_end, time_zone=zone)
        devices = await conn.fetch(web_queries.SELECT_DEVICES_WITH_VENDOR, site_id, MAX_DEVICES_SHOWN)
        for resource in ("site", "readings", "devices"):
            await record_read(conn, principal=principal, access=access, resource=resource)
    return page(
        request,
        "site.html",
        principal=principal,
        site=access,
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
    principal: SignedIn,
    site_id: SiteId,
    assigned: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    revoked: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> Response:
    """Show the site's installer assignments, running and past, with the forms to assign and revoke.

    After a form, `assigned` or `revoked` names the assignment it changed; the notice is written from the
    database row, so a link cannot put words of its own on the owner's page.
    """
    return await _installers_page(request, principal, site_id, assigned=assigned, revoked=revoked)


async def _installers_page(
    request: Request,
    principal: Principal,
    site_id: int,
    *,
    assigned: int | None = None,
    revoked: int | None = None,
    error: str = "",
    status_code: int = 200,
    form: dict[str, str] | None = None,
) -> Response:
    async with pool_of(request).acquire() as conn:
        access = await owned_site(conn, principal=principal, site_id=site_id)
        assignments = await conn.fetch(queries.SELECT_ASSIGNMENTS_OF_SITE, site_id, True)
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
        max_date=str(today + sharing_rules.MAX_ASSIGNMENT - dt.timedelta(days=1)),
    )


@router.post("/sites/{site_id}/installers")
async def assign_installer(
    request: Request,
    principal: SignedIn,
    site_id: SiteId,
    installer_username: Annotated[str, Form(max_length=64)] = "",
    expires_on: Annotated[str, Form(max_length=32)] = "",
) -> Response:
    """Assign an installer until the end of the chosen day (in the site's time zone)."""
    form = {"installer_username": installer_username, "expires_on": expires_on}
    try:
        async with pool_of(request).acquire() as conn, conn.transaction():
            access = await owned_site(conn, principal=principal, site_id=site_id)
            assignment_id = await sharing_rules.assign_installer(
                conn,
                site_id=site_id,
                owner_user_id=principal.user_id,
                installer_username=installer_username,
                expires_at=_end_of_day(expires_on, access.time_zone),
                username_field="installer",
                expires_field="until",
            )
    except Problem as problem:
        if problem.status != 422:  # only invalid input re-renders the form
            raise
        return await _installers_page(
            request, principal, site_id, error=problem.detail, status_code=422, form=form
        )
    return redirect(f"/sites/{site_id}/installers?assigned={assignment_id}")


@router.post("/sites/{site_id}/installers/{assignment_id}/revoke")
async def revoke_installer(
    request: Request,
    principal: SignedIn,
    site_id: SiteId,
    assignment_id: Annotated[int, Path(ge=1, le=MAX_ID)],
) -> Response:
    """End an installer's assignment at once."""
    async with pool_of(request).acquire() as conn:
        await owned_site(conn, principal=principal, site_id=site_id)
        await sharing_rules.revoke_assignment(conn, site_id=site_id, assignment_id=assignment_id)
    return redirect(f"/sites/{site_id}/installers?revoked={assignment_id}")


def _end_of_day(day: str, time_zone: str) -> dt.datetime:
    """Return the end of a YYYY-MM-DD day in a zone: the assignment runs through that day."""
    try:
        date = dt.date.fromisoformat(day)
    except ValueError:
        raise Problem(422, "until: give a date as YYYY-MM-DD") from None
    return dt.datetime.combine(date + dt.timedelta(days=1), dt.time(), tzinfo=zoneinfo.ZoneInfo(time_zone))


@router.get("/sites/{site_id}/access-log")
async def access_log(
    request: Request, principal: SignedIn, site_id: SiteId, before: dt.datetime | None = None
) -> Response:
    """Show who read the site's personal data, newest first, a page at a time."""
    if before is not None and before.tzinfo is None:
        before = before.replace(tzinfo=dt.UTC)
    async with pool_of(request).acquire() as conn:
        access = await owned_site(conn, principal=principal, site_id=site_id)
        rows = await conn.fetch(queries.SELECT_ACCESS_LOG_OF_SITE, site_id, before, ACCESS_LOG_PAGE + 1)
    records = rows[:ACCESS_LOG_PAGE]
    older = records[-1]["occurred_at"].isoformat() if len(rows) > ACCESS_LOG_PAGE else None
    return page(
        request,
        "access_log.html",
        principal=principal,
        site=access,
        tab="access-log",
        records=records,
        older=older,
    )


@router.get("/installer")
async def installer_sites(request: Request, principal: SignedIn) -> Response:
    """Show an installer the sites they are assigned to now, the soonest to end first."""
    if principal.role != "installer":
        return error_page(request, 403, "this page is for installers only", principal)
    async with pool_of(request).acquire() as conn:
        assignments = await installer_assignments(conn, principal=principal)
        zone = await conn.fetchval(queries.SELECT_TIME_ZONE_OF_USER, principal.user_id)
    return page(
        request,
        "installer.html",
        principal=principal,
        assignments=assignments,
        time_zone=zone or DEFAULT_TIME_ZONE,
    )
