"""The rules of assigning installers to a site and revoking them, shared by the API and the web pages."""

from __future__ import annotations

import datetime as dt

from api.problems import Problem, not_found
from api.queries import portal as queries
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
