"""Sites and what belongs to them: the owner's contact, gateways, devices, readings, settings, address.

Each function that shows someone else's personal data records the read (services/access.py), so a route
or a page cannot forget it; each reads only what falls in the reader's windows of time (`SiteAccess`).
"""

from __future__ import annotations

import datetime as dt
import json
import zoneinfo
from typing import Any

import asyncpg

from api.problems import Problem, not_found
from api.queries import sites as queries
from api.schemas.sites import (
    Device,
    Gateway,
    OwnerContact,
    Reading,
    Site,
    SiteAddress,
    SystemSetting,
    SystemSettingChange,
)
from api.security import Principal
from api.services.access import SiteAccess, record_read, visible_sites
from privacy.address import Address
from privacy.keys.crypto import DecryptionError, Keyring, seal_json
from privacy.keys.fields import CONTRACTS_HOLDER, SITES_ADDRESS, USERS_EMAIL, open_document, open_text
from privacy.keys.subject_keys import load_key
from privacy.location import LocationError
from thuis.db import Connection
from thuis.metrics import table_of

BUCKETS = {"15min": "15 minutes", "hour": "1 hour", "day": "1 day", "month": "1 month"}
BUCKET_SECONDS = {"15min": 900, "hour": 3600, "day": 86400, "month": 28 * 86400}
MAX_BUCKETS = 10_000
MAX_DEVICES_SHOWN = 200


def site(access: SiteAccess) -> Site:
    """Return the API's view of a site as a person sees it."""
    return Site.model_validate(
        {
            "site_id": access.site_id,
            "label": access.label,
            "time_zone": access.time_zone,
            "access": access.via,
            "assignment_id": access.assignment_id,
        }
    )


async def sites_of(conn: Connection, *, principal: Principal) -> list[SiteAccess]:
    """Return the sites the person may see now; reading those of others is recorded."""
    sites = await visible_sites(conn, principal=principal)
    for access in sites:
        await record_read(conn, principal=principal, access=access, resource="site")
    return sites


async def owner_contact(
    conn: Connection, keyring: Keyring, *, principal: Principal, access: SiteAccess
) -> OwnerContact:
    """Return the owner's name, address and email: user data an assigned installer needs, and is given."""
    if access.via == "resident":
        raise Problem(403, "a resident does not see the owner's user data")
    row = (
        await conn.fetchrow(queries.SELECT_OWNER_CONTACT, access.owner_user_id)
        if access.owner_user_id is not None
        else None
    )
    if row is None:
        raise not_found(f"the owner of site {access.site_id}")
    holder_key = await load_key(conn, keyring, row["key_id"])
    holder = open_document(
        holder_key, row["holder_ciphertext"], context=CONTRACTS_HOLDER.at(row["contract_id"], row["key_id"])
    )
    user_key = await load_key(conn, keyring, row["user_key_id"])
    account_email = open_text(
        user_key, row["email_ciphertext"], context=USERS_EMAIL.at(row["user_id"], row["user_key_id"])
    )
    await record_read(conn, principal=principal, access=access, resource="owner")
    return OwnerContact(
        holder_name=holder.get("holder_name") or "",
        initials=holder.get("initials"),
        street_address=holder.get("street_address"),
        postcode=holder.get("postcode"),
        city=holder.get("city"),
        email=account_email or holder.get("email"),
    )


async def gateways(conn: Connection, *, principal: Principal, access: SiteAccess) -> list[Gateway]:
    """Return the site's gateways: serial, vendor, firmware, when and from where last seen."""
    rows = await conn.fetch(
        queries.SELECT_GATEWAYS_OF_SITE, access.site_id, access.window_starts, access.window_ends
    )
    await record_read(conn, principal=principal, access=access, resource="gateways")
    return [
        Gateway(**{**dict(row), "last_seen_ip": str(row["last_seen_ip"]) if row["last_seen_ip"] else None})
        for row in rows
    ]


async def devices(
    conn: Connection, *, principal: Principal, access: SiteAccess, after: int | None, limit: int
) -> tuple[list[Device], bool]:
    """Return a page of the site's devices by id and whether more follow."""
    rows = await conn.fetch(
        queries.SELECT_DEVICES_OF_SITE,
        access.site_id,
        after,
        limit + 1,
        access.window_starts,
        access.window_ends,
    )
    await record_read(conn, principal=principal, access=access, resource="devices")
    return [Device(**dict(row)) for row in rows[:limit]], len(rows) > limit


async def devices_with_vendor(
    conn: Connection, *, principal: Principal, access: SiteAccess
) -> list[asyncpg.Record]:
    """Return the site's devices with their gateway's vendor, at most MAX_DEVICES_SHOWN (for the page)."""
    rows = await conn.fetch(
        queries.SELECT_DEVICES_WITH_VENDOR,
        access.site_id,
        MAX_DEVICES_SHOWN,
        access.window_starts,
        access.window_ends,
    )
    await record_read(conn, principal=principal, access=access, resource="devices")
    return list(rows)


async def device_table(conn: Connection, *, access: SiteAccess, device_id: int) -> str:
    """Return the table of a device of the site; one not there in the reader's windows is not found (404)."""
    device = await conn.fetchrow(
        queries.SELECT_DEVICE_OF_SITE, access.site_id, device_id, access.window_starts, access.window_ends
    )
    if device is None:
        raise not_found(f"device {device_id} of site {access.site_id}")
    return table_of(device["device_kind"])


async def raw_readings(
    conn: Connection,
    *,
    principal: Principal,
    access: SiteAccess,
    device_id: int,
    start: dt.datetime,
    end: dt.datetime,
    metric: str | None,
    after: tuple[dt.datetime, str] | None,
    limit: int,
) -> tuple[list[Reading], bool]:
    """Return a page of a device's readings in [start, end), by time and metric, and whether more follow."""
    table = await device_table(conn, access=access, device_id=device_id)
    rows = await conn.fetch(
        queries.SELECT_RAW_READINGS.format(table=table),  # the table comes from the metric catalogue
        device_id,
        start,
        end,
        metric,
        after[0] if after else None,
        after[1] if after else "",
        limit + 1,
        access.window_starts,
        access.window_ends,
    )
    await record_read(conn, principal=principal, access=access, resource="readings")
    items = [Reading(time=r["measured_at"], metric=r["metric"], value=r["value"]) for r in rows[:limit]]
    return items, len(rows) > limit


async def bucketed_readings(
    conn: Connection,
    *,
    principal: Principal,
    access: SiteAccess,
    device_id: int,
    start: dt.datetime,
    end: dt.datetime,
    metric: str | None,
    resolution: str,
    zone: str,
) -> list[Reading]:
    """Return a device's readings per bucket (mean, min, max, last, samples) in the calendar of `zone`."""
    if (end - start).total_seconds() / BUCKET_SECONDS[resolution] > MAX_BUCKETS:
        raise Problem(
            422, f"query parameter resolution: more than {MAX_BUCKETS} buckets; choose a coarser one"
        )
    table = await device_table(conn, access=access, device_id=device_id)
    rows = await conn.fetch(
        queries.SELECT_BUCKETED_READINGS.format(table=table),  # the table comes from the metric catalogue
        BUCKETS[resolution],
        zone,
        device_id,
        start,
        end,
        metric,
        MAX_BUCKETS * 64,
        access.window_starts,
        access.window_ends,
    )
    await record_read(conn, principal=principal, access=access, resource="readings")
    return [
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


def checked_zone(name: str) -> str:
    """Return an IANA time zone name; refuse anything else (422)."""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise Problem(422, f"query parameter time_zone: {name!r} is not an IANA time zone") from None
    return name


async def system_settings(
    conn: Connection, *, principal: Principal, access: SiteAccess
) -> list[SystemSetting]:
    """Return the site's schedules, rules and notification settings."""
    rows = await conn.fetch(
        queries.SELECT_SETTINGS_OF_SITE, access.site_id, access.window_starts, access.window_ends
    )
    await record_read(conn, principal=principal, access=access, resource="settings")
    return [SystemSetting(**{**dict(row), "definition": json.loads(row["definition"])}) for row in rows]


async def put_system_setting(conn: Connection, *, site_id: int, change: SystemSettingChange) -> SystemSetting:
    """Create or replace a setting of a site; the caller has checked that the person owns it."""
    row = await conn.fetchrow(
        queries.UPSERT_SETTING, site_id, change.kind, change.name, json.dumps(change.definition)
    )
    if row is None:
        raise RuntimeError("INSERT ... RETURNING returned nothing")
    return SystemSetting(**{**dict(row), "definition": json.loads(row["definition"])})


async def address(
    conn: Connection, keyring: Keyring, *, principal: Principal, access: SiteAccess
) -> SiteAddress:
    """Return the site's address and its coarse cells; a read by an assigned installer is recorded."""
    if access.via == "resident":
        raise Problem(403, "a resident does not see the address data of the owner")
    row = await conn.fetchrow(queries.SELECT_SITE_ADDRESS, access.site_id)
    document = {}
    if row is not None and row["address_ciphertext"] is not None:
        if row["address_key_id"] is None or not row["sealed_by_owner"]:
            # Never opened: not the owner's of today. A change of owner drops the address, so it was moved
            # here (or its key id changed) by someone writing the database: an alarm, like any that fails.
            raise DecryptionError(
                f"{SITES_ADDRESS} of row {access.site_id} (data key {row['address_key_id']}) does not open: "
                "it is not sealed with the key of the home's owner, so it was moved from another home"
            )
        key = await load_key(conn, keyring, row["address_key_id"])
        bound = SITES_ADDRESS.at(access.site_id, row["address_key_id"])
        document = open_document(key, row["address_ciphertext"], context=bound)
    await record_read(conn, principal=principal, access=access, resource="address")
    return SiteAddress(
        **Address.from_document(document).document(),
        postcode_area=row["postcode_area"] if row else None,
        h3_cell=row["h3_cell"] if row else None,
    )


async def set_address(
    conn: Connection, keyring: Keyring, *, owner_user_id: int, site_id: int, given: dict[str, Any]
) -> SiteAddress:
    """Store an address sealed with the owner's data key; keep only its coarse cells in the clear."""
    try:
        normalised = Address(**given).normalised()
        postcode_area, cell = normalised.postcode_area(), normalised.h3_cell()
    except LocationError as err:
        raise Problem(422, f"body: {err}") from None
    async with conn.transaction():
        key_id = await conn.fetchval(queries.SELECT_KEY_OF_OWNER, owner_user_id)
        key = await load_key(conn, keyring, key_id)
        sealed = seal_json(key, normalised.document(), context=SITES_ADDRESS.at(site_id, key_id))
        await conn.execute(queries.SET_SITE_ADDRESS, site_id, postcode_area, cell, key_id, sealed)
    return SiteAddress(**normalised.document(), postcode_area=postcode_area, h3_cell=cell)
