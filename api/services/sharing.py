"""Who else sees a site: residents the owner invites, installers the owner assigns, and who read what.

An owner sees the grants, assignments and access log of their own time at a home (`SiteAccess.windows`).
A resident reads a home once they accept the owner's invitation; the owner's invitation is answered the same
whether or not the username is a resident's account, so that it tells nothing about who has an account.
"""

from __future__ import annotations

import datetime as dt

import asyncpg

from api.problems import Problem, not_found
from api.queries import sharing as queries
from api.schemas.sharing import (
    AcceptedInvitation,
    AccessRecord,
    Assignment,
    Invitation,
    ResidentGrant,
    ResidentInvited,
)
from api.security import Principal
from api.services.access import SiteAccess, reader
from thuis import audit
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


async def resident_grants(
    conn: Connection, *, access: SiteAccess, include_ended: bool
) -> list[ResidentGrant]:
    """Return the residents the owner invited to the site in their time (`include_ended`: also past ones)."""
    rows = await conn.fetch(
        queries.SELECT_RESIDENT_GRANTS,
        access.site_id,
        include_ended,
        access.window_starts,
        access.window_ends,
    )
    return [ResidentGrant(**dict(row), status=_grant_status(row)) for row in rows]


def _grant_status(row: asyncpg.Record) -> str:
    if row["ended_at"] is not None:
        return "ended"
    return "invited" if row["accepted_at"] is None else "accepted"


async def invite_resident(
    conn: Connection, *, site_id: int, owner_user_id: int, username: str
) -> ResidentInvited:
    """Invite a resident's account to read a site; the caller has checked that the owner owns it.

    The same two statements run, and the same answer comes back, whether or not `username` is a resident's
    account: an invitation to anyone else is stored all the same and can never be accepted.
    """
    invited = username.strip().lower()
    async with conn.transaction():
        resident = await conn.fetchval(queries.SELECT_RESIDENT_BY_USERNAME, invited)
        await conn.execute(queries.INSERT_INVITATION, site_id, resident, owner_user_id, invited)
    return ResidentInvited(
        username=invited,
        detail=(
            f"if {invited!r} is a resident's account, it is invited to read site {site_id}; the resident "
            "reads it once they accept the invitation"
        ),
    )


async def end_resident_grant(conn: Connection, *, site_id: int, grant_id: int) -> None:
    """End a resident's access to a site at once; one that is not running is not found (404)."""
    if await conn.fetchval(queries.END_RESIDENT_GRANT, site_id, grant_id) is None:
        raise not_found(f"access {grant_id} of site {site_id}")


async def invitations(conn: Connection, *, principal: Principal) -> list[Invitation]:
    """Return a resident's invitations waiting for an answer (none for others); each read is recorded."""
    rows = await conn.fetch(queries.SELECT_INVITATIONS_OF_RESIDENT, principal.user_id)
    for row in rows:
        await audit.record_read(
            conn,
            reader=reader(principal),
            subject_user_id=row["owner_user_id"],
            site_id=row["site_id"],
            resource="invitation",
        )
    return [Invitation(**{k: v for k, v in dict(row).items() if k != "owner_user_id"}) for row in rows]


async def accept_invitation(
    conn: Connection, *, principal: Principal, invitation_id: int
) -> AcceptedInvitation:
    """Accept an invitation of the resident's own that waits for an answer; any other is not found (404)."""
    row = await conn.fetchrow(queries.ACCEPT_INVITATION, invitation_id, principal.user_id)
    if row is None:
        raise not_found(f"invitation {invitation_id}")
    return AcceptedInvitation(
        invitation_id=row["grant_id"], site_id=row["site_id"], accepted_at=row["accepted_at"]
    )


async def decline_invitation(conn: Connection, *, principal: Principal, invitation_id: int) -> None:
    """Decline an invitation of the resident's own that waits for an answer; any other is not found (404)."""
    if await conn.fetchval(queries.DECLINE_INVITATION, invitation_id, principal.user_id) is None:
        raise not_found(f"invitation {invitation_id}")


async def assignment_rows(
    conn: Connection, *, access: SiteAccess, include_ended: bool
) -> list[asyncpg.Record]:
    """Return the site's installer assignments of the owner's time, running (`include_ended`: also past)."""
    return list(
        await conn.fetch(
            queries.SELECT_ASSIGNMENTS_OF_SITE,
            access.site_id,
            include_ended,
            access.window_starts,
            access.window_ends,
        )
    )


async def assignments(conn: Connection, *, access: SiteAccess, include_ended: bool) -> list[Assignment]:
    """Return the site's installer assignments."""
    return [
        _assignment(row) for row in await assignment_rows(conn, access=access, include_ended=include_ended)
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
    conn: Connection, *, access: SiteAccess, before: dt.datetime | None, limit: int
) -> list[asyncpg.Record]:
    """Return up to `limit` reads of the owner's data of the site by others before `before`, newest first."""
    return list(
        await conn.fetch(
            queries.SELECT_ACCESS_LOG_OF_SITE, access.site_id, before, limit, access.owner_user_id
        )
    )


async def access_log(
    conn: Connection, *, access: SiteAccess, before: dt.datetime | None, limit: int
) -> tuple[list[AccessRecord], bool]:
    """Return a page of the access log and whether older records follow."""
    rows = await access_log_rows(conn, access=access, before=before, limit=limit + 1)
    return [AccessRecord(**dict(row)) for row in rows[:limit]], len(rows) > limit
