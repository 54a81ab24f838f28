"""Sites and what belongs to them: gateways, devices, readings, settings; every read by others recorded."""

from __future__ import annotations

import datetime as dt
import json
import zoneinfo
from typing import Annotated, Literal, TypeAlias

from fastapi import APIRouter, Query, Request

from api.pagination import DEFAULT_PAGE, MAX_PAGE, decode_cursor, encode_cursor
from api.params import Id
from api.problems import PROBLEM_RESPONSES, Problem, not_found
from api.queries import portal as queries
from api.schemas.portal import (
    Device,
    Gateway,
    OwnerContact,
    Page,
    Reading,
    Site,
    SystemSetting,
    SystemSettingChange,
)
from api.security import SignedIn, pool_of
from api.services.access import (
    SiteAccess,
    owned_site,
    record_read,
    site_access,
    user_time_zone,
    visible_sites,
)
from api.services.personal import keyring_of
from privacy.keys.fields import CONTRACTS_HOLDER, USERS_EMAIL, open_document, open_text
from privacy.keys.subject_keys import load_key
from thuis.db import Connection
from thuis.metrics import table_of

router = APIRouter(prefix="/api/v1", responses=PROBLEM_RESPONSES, tags=["sites"])

SiteId: TypeAlias = Id
DeviceId: TypeAlias = Id
BUCKETS = {"15min": "15 minutes", "hour": "1 hour", "day": "1 day", "month": "1 month"}
BUCKET_SECONDS = {"15min": 900, "hour": 3600, "day": 86400, "month": 28 * 86400}
MAX_BUCKETS = 10_000
Resolution = Literal["raw", "15min", "hour", "day", "month"]


@router.get("/sites", summary="The sites I may see")
async def list_sites(request: Request, principal: SignedIn) -> list[Site]:
    """Return the sites the signed-in person owns, was granted as a resident or is assigned to now."""
    async with pool_of(request).acquire() as conn:
        sites = await visible_sites(conn, principal=principal)
        for access in sites:
            await record_read(conn, principal=principal, access=access, resource="site")
    return [_site(access) for access in sites]


def _site(access: SiteAccess) -> Site:
    return Site.model_validate(
        {
            "site_id": access.site_id,
            "label": access.label,
            "time_zone": access.time_zone,
            "access": access.via,
            "assignment_id": access.assignment_id,
        }
    )


@router.get("/sites/{site_id}", summary="A site")
async def get_site(request: Request, principal: SignedIn, site_id: SiteId) -> Site:
    """Return one site the signed-in person may see."""
    async with pool_of(request).acquire() as conn:
        access = await site_access(conn, principal=principal, site_id=site_id)
        await record_read(conn, principal=principal, access=access, resource="site")
    return _site(access)


@router.get("/sites/{site_id}/owner", summary="The owner's contact details (owner, assigned installer)")
async def owner_contact(request: Request, principal: SignedIn, site_id: SiteId) -> OwnerContact:
    """Return the owner's name, address and email: user data an assigned installer needs, and is given."""
    async with pool_of(request).acquire() as conn:
        access = await site_access(conn, principal=principal, site_id=site_id)
        if access.via == "resident":
            raise Problem(403, "a resident does not see the owner's user data")
        row = (
            await conn.fetchrow(queries.SELECT_OWNER_CONTACT, access.owner_user_id)
            if access.owner_user_id is not None
            else None
        )
        if row is None:
            raise not_found(f"the owner of site {site_id}")
        keyring = keyring_of(request)
        holder = open_document(
            await load_key(conn, keyring, row["key_id"]),
            row["holder_ciphertext"],
            context=CONTRACTS_HOLDER,
        )
        user_key = await load_key(conn, keyring, row["user_key_id"])
        account_email = open_text(user_key, row["email_ciphertext"], context=USERS_EMAIL)
        await record_read(conn, principal=principal, access=access, resource="owner")
    return OwnerContact(
        holder_name=holder.get("holder_name") or "",
        initials=holder.get("initials"),
        street_address=holder.get("street_address"),
        postcode=holder.get("postcode"),
        city=holder.get("city"),
        email=account_email or holder.get("email"),
    )


@router.get("/sites/{site_id}/gateways", summary="The gateways of a site")
async def list_gateways(request: Request, principal: SignedIn, site_id: SiteId) -> list[Gateway]:
    """Return the site's gateways: serial, vendor, firmware, when and from where last seen."""
    async with pool_of(request).acquire() as conn:
        access = await site_access(conn, principal=principal, site_id=site_id)
        rows = await conn.fetch(queries.SELECT_GATEWAYS_OF_SITE, site_id)
        await record_read(conn, principal=principal, access=access, resource="gateways")
    return [
        Gateway(**{**dict(row), "last_seen_ip": str(row["last_seen_ip"]) if row["last_seen_ip"] else None})
        for row in rows
    ]


@router.get("/sites/{site_id}/devices", summary="The devices of a site")
async def list_devices(
    request: Request,
    principal: SignedIn,
    site_id: SiteId,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
) -> Page[Device]:
    """Return the site's devices, a page at a time."""
    after = decode_cursor(cursor, fields={"device_id": int})
    async with pool_of(request).acquire() as conn:
        access = await site_access(conn, principal=principal, site_id=site_id)
        rows = await conn.fetch(
            queries.SELECT_DEVICES_OF_SITE, site_id, after["device_id"] if after else None, limit + 1
        )
        await record_read(conn, principal=principal, access=access, resource="devices")
    items = [Device(**dict(row)) for row in rows[:limit]]
    more = len(rows) > limit
    return Page[Device](
        items=items, next_cursor=encode_cursor(device_id=items[-1].device_id) if more else None
    )


@router.get("/sites/{site_id}/devices/{device_id}/readings", summary="Readings of a device")
async def list_readings(
    request: Request,
    principal: SignedIn,
    *,
    site_id: SiteId,
    device_id: DeviceId,
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
    async with pool_of(request).acquire() as conn:
        access = await site_access(conn, principal=principal, site_id=site_id)
        device = await conn.fetchrow(queries.SELECT_DEVICE_OF_SITE, site_id, device_id)
        if device is None:
            raise not_found(f"device {device_id} of site {site_id}")
        table = table_of(device["device_kind"])
        zone = _zone(time_zone or await user_time_zone(conn, principal=principal, access=access))
        if resolution == "raw":
            page = await _raw(
                conn,
                table=table,
                device_id=device_id,
                start=start,
                end=end,
                metric=metric,
                cursor=cursor,
                limit=limit,
            )
        else:
            page = await _bucketed(
                conn,
                table=table,
                device_id=device_id,
                start=start,
                end=end,
                metric=metric,
                resolution=resolution,
                zone=zone,
            )
        await record_read(conn, principal=principal, access=access, resource="readings")
    tz = zoneinfo.ZoneInfo(zone)
    for item in page.items:
        item.time = item.time.astimezone(tz)
    return page


async def _raw(
    conn: Connection,
    *,
    table: str,
    device_id: int,
    start: dt.datetime,
    end: dt.datetime,
    metric: str | None,
    cursor: str | None,
    limit: int,
) -> Page[Reading]:
    after = decode_cursor(cursor, fields={"time": dt.datetime, "metric": str})
    rows = await conn.fetch(
        queries.SELECT_RAW_READINGS.format(table=table),
        device_id,
        start,
        end,
        metric,
        after["time"] if after else None,
        after["metric"] if after else "",
        limit + 1,
    )
    items = [Reading(time=r["measured_at"], metric=r["metric"], value=r["value"]) for r in rows[:limit]]
    more = len(rows) > limit
    return Page[Reading](
        items=items,
        next_cursor=encode_cursor(time=items[-1].time, metric=items[-1].metric) if more else None,
    )


async def _bucketed(
    conn: Connection,
    *,
    table: str,
    device_id: int,
    start: dt.datetime,
    end: dt.datetime,
    metric: str | None,
    resolution: str,
    zone: str,
) -> Page[Reading]:
    if (end - start).total_seconds() / BUCKET_SECONDS[resolution] > MAX_BUCKETS:
        raise Problem(
            422, f"query parameter resolution: more than {MAX_BUCKETS} buckets; choose a coarser one"
        )
    rows = await conn.fetch(
        queries.SELECT_BUCKETED_READINGS.format(table=table),
        BUCKETS[resolution],
        zone,
        device_id,
        start,
        end,
        metric,
        MAX_BUCKETS * 64,
    )
    items = [
        Reading(
            time=r["bucket"],
            metric=r["metric"],
            mean=r["mean_value"],
            min=r["min_value"],
            max=r["max_value"],
            last=r["last_value"],
            samples=r["samples"],
        )
        for r in rows
    ]
    return Page[Reading](items=items, next_cursor=None)


def _aware(moment: dt.datetime, name: str) -> dt.datetime:
    if moment.tzinfo is None:
        raise Problem(
            422, f"query parameter {name}: give a time with an offset, e.g. 2026-11-25T14:00:00+01:00"
        )
    return moment


def _zone(name: str) -> str:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise Problem(422, f"query parameter time_zone: {name!r} is not an IANA time zone") from None
    return name


@router.get("/sites/{site_id}/settings", summary="Schedules, rules and notification settings of a site")
async def list_settings(request: Request, principal: SignedIn, site_id: SiteId) -> list[SystemSetting]:
    """Return the site's system settings."""
    async with pool_of(request).acquire() as conn:
        access = await site_access(conn, principal=principal, site_id=site_id)
        rows = await conn.fetch(queries.SELECT_SETTINGS_OF_SITE, site_id)
        await record_read(conn, principal=principal, access=access, resource="settings")
    return [SystemSetting(**{**dict(row), "definition": json.loads(row["definition"])}) for row in rows]


@router.put("/sites/{site_id}/settings", summary="Create or replace a setting of a site (owner)")
async def put_setting(
    request: Request, principal: SignedIn, site_id: SiteId, body: SystemSettingChange
) -> SystemSetting:
    """Create or replace a schedule, rule or notification setting; only the owner may."""
    async with pool_of(request).acquire() as conn:
        await owned_site(conn, principal=principal, site_id=site_id)
        row = await conn.fetchrow(
            queries.UPSERT_SETTING, site_id, body.kind, body.name, json.dumps(body.definition)
        )
    if row is None:
        raise RuntimeError("INSERT ... RETURNING returned nothing")
    return SystemSetting(**{**dict(row), "definition": json.loads(row["definition"])})
