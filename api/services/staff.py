"""The installers' own views, their company admin's, and the privacy officer's audit trail."""

from __future__ import annotations

import datetime as dt

from api.problems import Problem
from api.queries import staff as queries
from api.schemas.staff import AuditRecord, CompanyAssignment, InstallerAssignment
from api.security import Principal
from api.services.access import installer_assignments
from thuis.db import Connection


async def my_assignments(conn: Connection, *, principal: Principal) -> list[InstallerAssignment]:
    """Return the installer's running assignments, the soonest to end first (reading them is recorded)."""
    return [
        InstallerAssignment(
            assignment_id=row["assignment_id"],
            site_id=row["site_id"],
            site_label=row["label"],
            assigned_at=row["assigned_at"],
            expires_at=row["expires_at"],
        )
        for row in await installer_assignments(conn, principal=principal)
    ]


async def company_assignments(
    conn: Connection, *, principal: Principal, before: int | None, limit: int
) -> tuple[list[CompanyAssignment], bool]:
    """Return a page of every assignment of the company's installers, newest first; for its admin."""
    if not principal.company_admin or principal.company_id is None:
        raise Problem(403, "this is for the admin of an installer company only")
    rows = await conn.fetch(queries.SELECT_ASSIGNMENTS_OF_COMPANY, principal.company_id, before, limit + 1)
    items = [
        CompanyAssignment(
            **{k: v for k, v in dict(row).items() if k != "username"}, installer_username=row["username"]
        )
        for row in rows[:limit]
    ]
    return items, len(rows) > limit


async def audit_trail(
    conn: Connection, *, before: dt.datetime | None, limit: int
) -> tuple[list[AuditRecord], bool]:
    """Return a page of every recorded read of personal data and action on a request, newest first."""
    rows = await conn.fetch(queries.SELECT_AUDIT_TRAIL, before, limit + 1)
    return [AuditRecord(**dict(row)) for row in rows[:limit]], len(rows) > limit
