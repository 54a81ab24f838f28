"""Who may see which site, on what ground, and the record of every read of someone else's personal data."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from api.problems import Problem, not_found
from api.queries import access as queries
from api.queries import staff as staff_queries
from api.security import Principal
from thuis import audit
from thuis.db import Connection


@dataclass(frozen=True)
class SiteAccess:
    """A site a person may see, and on what ground."""

    site_id: int
    label: str
    time_zone: str
    owner_user_id: int | None
    via: str  # "owner", "resident" or "installer"
    assignment_id: int | None  # the installer's assignment it is seen under

    @property
    def is_data_subject(self) -> bool:
        """Say whether the person is the one the data is about (the owner), so a read is not recorded."""
        return self.via == "owner"


def reader(principal: Principal) -> audit.Reader:
    """Return who reads, as the audit trail records them."""
    return audit.Reader(user_id=principal.user_id, role=principal.role)


async def visible_sites(conn: Connection, *, principal: Principal) -> list[SiteAccess]:
    """Return every site the person may see now: owned, granted as resident, assigned as installer."""
    rows = await conn.fetch(queries.SELECT_VISIBLE_SITES, principal.user_id, principal.role)
    return [SiteAccess(**dict(row)) for row in rows]


async def site_access(conn: Connection, *, principal: Principal, site_id: int) -> SiteAccess:
    """Return how the person may see a site; a site they may not see does not exist for them (404)."""
    row = await conn.fetchrow(queries.SELECT_SITE_ACCESS, principal.user_id, principal.role, site_id)
    if row is None:
        raise not_found(f"site {site_id}")
    return SiteAccess(**dict(row))


async def owned_site(conn: Connection, *, principal: Principal, site_id: int) -> SiteAccess:
    """Return a site the person owns; one they see otherwise is refused (403), one they do not see is 404."""
    access = await site_access(conn, principal=principal, site_id=site_id)
    if access.via != "owner":
        raise Problem(403, f"only the owner of site {site_id} may do this")
    return access


async def installer_assignments(conn: Connection, *, principal: Principal) -> list[asyncpg.Record]:
    """Return the installer's running assignments with their sites; reading the sites' names is recorded."""
    rows = await conn.fetch(staff_queries.SELECT_ASSIGNMENTS_OF_INSTALLER, principal.user_id)
    for row in rows:
        access = SiteAccess(
            site_id=row["site_id"],
            label=row["label"],
            time_zone=row["time_zone"],
            owner_user_id=row["owner_user_id"],
            via="installer",
            assignment_id=row["assignment_id"],
        )
        await record_read(conn, principal=principal, access=access, resource="site")
    return list(rows)


async def preferred_time_zone(conn: Connection, *, principal: Principal) -> str | None:
    """Return the person's display time zone, if they chose one."""
    zone: str | None = await conn.fetchval(queries.SELECT_TIME_ZONE_OF_USER, principal.user_id)
    return zone


async def user_time_zone(conn: Connection, *, principal: Principal, access: SiteAccess) -> str:
    """Return the time zone to show a site in: the person's display preference, else the site's own."""
    return await preferred_time_zone(conn, principal=principal) or access.time_zone


async def record_read(conn: Connection, *, principal: Principal, access: SiteAccess, resource: str) -> None:
    """Record a read of a site's personal data by anyone but its owner: who, what, when, on which ground."""
    if access.is_data_subject:
        return
    await audit.record_read(
        conn,
        reader=reader(principal),
        subject_user_id=access.owner_user_id,
        site_id=access.site_id,
        resource=resource,
        assignment_id=access.assignment_id,
    )
