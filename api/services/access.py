"""Who may see which site, on what ground, and the record of every read of someone else's personal data."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg

from api.problems import Problem, not_found
from api.queries import access as queries
from api.queries import staff as staff_queries
from api.security import Principal
from thuis import audit
from thuis.db import Connection

# A window of time whose data a person may see: [since, until), None for unbounded.
Window = tuple[dt.datetime | None, dt.datetime | None]
# Every moment: for what is not about a person's time at a home (benchmarks, checks of the rollups).
ALWAYS: tuple[Window, ...] = ((None, None),)


@dataclass(frozen=True)
class SiteAccess:
    """A site a person may see, on what ground, and the windows of time whose data they may see.

    A home's data belongs to whoever owned it when it was measured: an owner sees what was measured while
    they owned it, a resident while their accepted grant held, an installer while their assignments ran
    (all within the current owner's time). Every read of the site's data is limited to `windows`.
    """

    site_id: int
    label: str
    time_zone: str
    owner_user_id: int | None
    via: str  # "owner", "resident" or "installer"
    assignment_id: int | None  # the installer's assignment it is seen under
    windows: tuple[Window, ...] = field(default=())

    @property
    def is_data_subject(self) -> bool:
        """Say whether the person is the one the data is about (the owner), so a read is not recorded."""
        return self.via == "owner"

    @property
    def window_starts(self) -> list[dt.datetime | None]:
        """Return the windows' starts, as the statements take them (an array, NULL for unbounded)."""
        return [since for since, _ in self.windows]

    @property
    def window_ends(self) -> list[dt.datetime | None]:
        """Return the windows' ends, as the statements take them (an array, NULL for unbounded)."""
        return [until for _, until in self.windows]


def merged_windows(
    starts: Sequence[dt.datetime | None], ends: Sequence[dt.datetime | None]
) -> tuple[Window, ...]:
    """Return windows in time order, those that overlap or touch merged, so no moment is in two of them.

    (An installer's assignments to one home may overlap; every row read must be read once.)
    """
    merged: list[Window] = []
    for since, until in sorted(zip(starts, ends, strict=True), key=_window_order):
        if merged and _reaches(merged[-1][1], since):
            first, last_until = merged[-1]
            merged[-1] = (first, None if last_until is None or until is None else max(last_until, until))
        else:
            merged.append((since, until))
    return tuple(merged)


def _window_order(window: Window) -> dt.datetime:
    return window[0] or dt.datetime.min.replace(tzinfo=dt.UTC)


def _reaches(until: dt.datetime | None, since: dt.datetime | None) -> bool:
    """Say whether a window ending at `until` reaches one starting at `since`."""
    return until is None or since is None or since <= until


def _site_access(row: asyncpg.Record) -> SiteAccess:
    values = dict(row)
    windows = merged_windows(values.pop("window_starts"), values.pop("window_ends"))
    return SiteAccess(**values, windows=windows)


def reader(principal: Principal) -> audit.Reader:
    """Return who reads, as the audit trail records them."""
    return audit.Reader(user_id=principal.user_id, role=principal.role)


async def visible_sites(conn: Connection, *, principal: Principal) -> list[SiteAccess]:
    """Return every site the person may see now: owned, granted as resident, assigned as installer."""
    rows = await conn.fetch(queries.SELECT_VISIBLE_SITES, principal.user_id, principal.role, None)
    return [_site_access(row) for row in rows]


async def site_access(conn: Connection, *, principal: Principal, site_id: int) -> SiteAccess:
    """Return how the person may see a site; a site they may not see does not exist for them (404)."""
    row = await conn.fetchrow(queries.SELECT_VISIBLE_SITES, principal.user_id, principal.role, site_id)
    if row is None:
        raise not_found(f"site {site_id}")
    return _site_access(row)


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
