"""Sites and what belongs to them: gateways, devices, readings, settings; every read by others recorded."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from api.deps import ConnDep, Id, KeyringDep, OwnedSite, SignedIn, VisibleSite
from api.pagination import DEFAULT_PAGE, MAX_PAGE, decode_cursor, encode_cursor
from api.problems import PROBLEM_RESPONSES, Problem
from api.schemas.common import Page
from api.schemas.sites import (
    Device,
    Gateway,
    OwnerContact,
    Reading,
    Site,
    SiteAddress,
    SiteAddressChange,
    SystemSetting,
    SystemSettingChange,
)
from api.services import sites
from api.services.access import record_read, user_time_zone

router = APIRouter(prefix="/api/v1", responses=PROBLEM_RESPONSES, tags=["sites"])

Resolution = Literal["raw", "15min", "hour", "day", "month"]


@router.get("/sites", summary="The sites I may see")
async def list_sites(principal: SignedIn, conn: ConnDep) -> list[Site]:
    """Return the sites the signed-in person owns, was granted as a resident or is assigned to now."""
    return [sites.site(access) for access in await sites.sites_of(conn, principal=principal)]


@router.get("/sites/{site_id}", summary="A site")
async def get_site(site: VisibleSite, principal: SignedIn, conn: ConnDep) -> Site:
    """Return one site the signed-in person may see."""
    await record_read(conn, principal=principal, access=site, resource="site")
    return sites.site(site)


@router.get("/sites/{site_id}/owner", summary="The owner's contact details (owner, assigned installer)")
async def owner_contact(
    site: VisibleSite, principal: SignedIn, conn: ConnDep, keyring: KeyringDep
) -> OwnerContact:
    """Return the owner's name, address and email: user data an assigned installer needs, and is given."""
    return await sites.owner_contact(conn, keyring, principal=principal, access=site)


@router.get("/sites/{site_id}/address", summary="Where a site is (owner, assigned installer)")
async def get_address(
    site: VisibleSite, principal: SignedIn, conn: ConnDep, keyring: KeyringDep
) -> SiteAddress:
    """Return the site's address and the coarse cells derived from it; an installer's read is recorded."""
    return await sites.address(conn, keyring, principal=principal, access=site)


@router.put("/sites/{site_id}/address", summary="Set or correct where a site is (owner)")
async def set_address(
    site: OwnedSite, principal: SignedIn, body: SiteAddressChange, conn: ConnDep, keyring: KeyringDep
) -> SiteAddress:
    """Store the address sealed with the owner's data key; keep only its coarse cells in the clear."""
    return await sites.set_address(
        conn,
        keyring,
        owner_user_id=principal.user_id,
        site_id=site.site_id,
        given=body.model_dump(),
    )


@router.get("/sites/{site_id}/gateways", summary="The gateways of a site")
async def list_gateways(site: VisibleSite, principal: SignedIn, conn: ConnDep) -> list[Gateway]:
    """Return the site's gateways: serial, vendor, firmware, when and from where last seen."""
    return await sites.gateways(conn, principal=principal, access=site)


@router.get("/sites/{site_id}/devices", summary="The devices of a site")
async def list_devices(
    site: VisibleSite,
    principal: SignedIn,
    conn: ConnDep,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
) -> Page[Device]:
    """Return the site's devices, a page at a time."""
    after = decode_cursor(cursor, fields={"device_id": int})
    items, more = await sites.devices(
        conn, principal=principal, access=site, after=after["device_id"] if after else None, limit=limit
    )
    return Page[Device](
        items=items, next_cursor=encode_cursor(device_id=items[-1].device_id) if more else None
    )


@router.get("/sites/{site_id}/devices/{device_id}/readings", summary="Readings of a device")
async def list_readings(
    site: VisibleSite,
    principal: SignedIn,
    conn: ConnDep,
    *,
    device_id: Id,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    resolution: Resolution = "raw",
    metric: Annotated[str | None, Query(max_length=64)] = None,
    time_zone: Annotated[str | None, Query(max_length=64)] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
) -> Page[Reading]:
    """Return a device's readings from `start` to `end` (default: the last day), raw or per bucket.

    Buckets of a day or a month follow the calendar of `time_zone` (default: the user's preference).
    """
    end = _aware(end, "end") if end else dt.datetime.now(dt.UTC)
    start = _aware(start, "start") if start else end - dt.timedelta(days=1)
    if start >= end:
        raise Problem(422, "query parameter start: must be before end")
    zone = sites.checked_zone(time_zone or await user_time_zone(conn, principal=principal, access=site))
    if resolution == "raw":
        after = decode_cursor(cursor, fields={"time": dt.datetime, "metric": str})
        items, more = await sites.raw_readings(
            conn,
            principal=principal,
            access=site,
            device_id=device_id,
            start=start,
            end=end,
            metric=metric,
            after=(after["time"], after["metric"]) if after else None,
            limit=limit,
        )
        next_cursor = encode_cursor(time=items[-1].time, metric=items[-1].metric) if more else None
    else:
        items = await sites.bucketed_readings(
            conn,
            principal=principal,
            access=site,
            device_id=device_id,
            start=start,
            end=end,
            metric=metric,
            resolution=resolution,
            zone=zone,
        )
        next_cursor = None
    tz = zoneinfo.ZoneInfo(zone)
    for item in items:
        item.time = item.time.astimezone(tz)
    return Page[Reading](items=items, next_cursor=next_cursor)


def _aware(moment: dt.datetime, name: str) -> dt.datetime:
    if moment.tzinfo is None:
        raise Problem(
            422, f"query parameter {name}: give a time with an offset, e.g. 2026-11-25T14:00:00+01:00"
        )
    return moment


@router.get("/sites/{site_id}/settings", summary="Schedules, rules and notification settings of a site")
async def list_settings(site: VisibleSite, principal: SignedIn, conn: ConnDep) -> list[SystemSetting]:
    """Return the site's system settings."""
    return await sites.system_settings(conn, principal=principal, access=site)


@router.put("/sites/{site_id}/settings", summary="Create or replace a setting of a site (owner)")
async def put_setting(site: OwnedSite, body: SystemSettingChange, conn: ConnDep) -> SystemSetting:
    """Create or replace a schedule, rule or notification setting; only the owner may."""
    return await sites.put_system_setting(conn, site_id=site.site_id, change=body)
