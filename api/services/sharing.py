"""Who else sees a site: residents the owner grants, installers the owner assigns, and who read what."""

from __future__ import annotations

import datetime as dt

import asyncpg

from api.problems import Problem, not_found
from api.queries import sharing as queries
from api.schemas.sharing import AccessRecord, Assignment, ResidentGrant
from thuis.db import Connection

# An assignment runs for at most this long; the owner renews it if the work goes on.
MAX_ASSIGNMENT = dt.timedelta(days=366)


def check_assignment_end(expires_at: dt.datetime, *, field: str = "body field expires_at") -> None:
    """Refuse an assignment end that is not in the future or more than a year ahead (422)."""
    now = dt.datetime.now(dt.UTC)
    if expires_at <= now:
        raise Problem(422, f"{field}: must be in the future")
    if expires_at > now + MAX_ASSIGNMENT:
        raise Problem(422, f"{field}: an assignment runs for at most a year; renew it after")


async def assign_installer(
    conn: Connection,
    *,
    site_id: int,
    owner_user_id: int,
    installer_username: str,
    expires_at: dt.datetime,
    username_field: str = "body field installer_username",
    expires_field: str = "body field expires_at",
) -> int:
    """Assign an installer's account to a site until `expires_at`; return the assignment's id.

    The caller has checked that `owner_user_id` owns the site, and runs this in a transaction.
    """
    check_assignment_end(expires_at, field=expires_field)
    installer = await conn.fetchrow(queries.SELECT_USER_BY_USERNAME, installer_username.strip().lower())
    if installer is None or installer["role"] != "installer":
        raise Problem(422, f"{username_field}: there is no installer account {installer_username!r}")
    assignment_id: int = await conn.fetchval(
        queries.INSERT_ASSIGNMENT,
        site_id,
        installer["user_id"],
        installer["installer_company_id"],
        owner_user_id,
        expires_at,
    )
    return assignment_id


async def revoke_assignment(conn: Connection, *, site_id: int, assignment_id: int) -> None:
    """End a running assignment of a site at once; one that is not running is not found (404)."""
    if await conn.fetchval(queries.REVOKE_ASSIGNMENT, site_id, assignment_id) is None:
        raise not_found(f"running assignment {assignment_id} of site {site_id}")


async def resident_grants(conn: Connection, *, site_id: int, include_ended: bool) -> list[ResidentGrant]:
    """Return the residents who may read the site (with `include_ended`, also those taken back)."""
    rows = await conn.fetch(queries.SELECT_RESIDENT_GRANTS, site_id, include_ended)
    return [ResidentGrant(**{k: v for k, v in dict(row).items() if k != "resident_user_id"}) for row in rows]


async def grant_resident(
    conn: Connection, *, site_id: int, owner_user_id: int, username: str
) -> ResidentGrant:
    """Let a resident's account read a site, read-only; the caller has checked that the owner owns it."""
    async with conn.transaction():
        resident = await conn.fetchrow(queries.SELECT_USER_BY_USERNAME, username.strip().lower())
        if resident is None or resident["role"] != "resident":
            raise Problem(422, f"body field username: there is no resident account {username!r}")
        row = await conn.fetchrow(queries.INSERT_RESIDENT_GRANT, site_id, resident["user_id"], owner_user_id)
        if row is None:
            raise Problem(409, f"{username} may read site {site_id} already")
    return ResidentGrant(
        grant_id=row["grant_id"], username=username.lower(), granted_at=row["granted_at"], ended_at=None
    )


async def end_resident_grant(conn: Connection, *, site_id: int, grant_id: int) -> None:
    """End a resident's access to a site at once; one that is not running is not found (404)."""
    if await conn.fetchval(queries.END_RESIDENT_GRANT, site_id, grant_id) is None:
        raise not_found(f"access {grant_id} of site {site_id}")


async def assignment_rows(conn: Connection, *, site_id: int, include_ended: bool) -> list[asyncpg.Record]:
    """Return the site's installer assignments, running (and with `include_ended` also past), as rows."""
    return list(await conn.fetch(queries.SELECT_ASSIGNMENTS_OF_SITE, site_id, include_ended))


async def assignments(conn: Connection, *, site_id: int, include_ended: bool) -> list[Assignment]:
    """Return the site's installer assignments."""
    return [
        _assignment(row) for row in await assignment_rows(conn, site_id=site_id, include_ended=include_ended)
    ]


async def assignment(conn: Connection, *, site_id: int, assignment_id: int) -> Assignment:
    """Return one assignment of a site."""
    return _assignment(await conn.fetchrow(queries.SELECT_ASSIGNMENT, site_id, assignment_id))


def _assignment(row: asyncpg.Record | None) -> Assignment:
    if row is None:
        raise RuntimeError("the assignment just made was not found")
    values = dict(row)
    values["installer_username"] = values.pop("username")
    values.pop("installer_user_id")
    values.pop("ended_at")
    return Assignment(**values)


async def access_log_rows(
    conn: Connection, *, site_id: int, before: dt.datetime | None, limit: int
) -> list[asyncpg.Record]:
    """Return up to `limit` reads of the site's personal data by others before `before`, newest first."""
    return list(await conn.fetch(queries.SELECT_ACCESS_LOG_OF_SITE, site_id, before, limit))


async def access_log(
    conn: Connection, *, site_id: int, before: dt.datetime | None, limit: int
) -> tuple[list[AccessRecord], bool]:
    """Return a page of the access log and whether older records follow."""
    rows = await access_log_rows(conn, site_id=site_id, before=before, limit=limit + 1)
    return [AccessRecord(**dict(row)) for row in rows[:limit]], len(rows) > limit
