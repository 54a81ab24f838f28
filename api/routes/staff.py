"""Installers' own views, their company admin's, and the privacy officer's audit trail."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query, Request

from api.pagination import DEFAULT_PAGE, MAX_PAGE, decode_cursor, encode_cursor
from api.problems import PROBLEM_RESPONSES, Problem
from api.queries import portal as queries
from api.schemas.portal import AuditRecord, CompanyAssignment, InstallerAssignment, Page
from api.security import Principal, pool_of, require_role
from api.services.access import installer_assignments

router = APIRouter(prefix="/api/v1", responses=PROBLEM_RESPONSES)

Installer = Annotated[Principal, require_role("installer")]
PrivacyOfficer = Annotated[Principal, require_role("privacy_officer")]


@router.get("/installer/assignments", tags=["installer"], summary="The sites I am assigned to now")
async def my_assignments(request: Request, principal: Installer) -> list[InstallerAssignment]:
    """Return the installer's running assignments, the soonest to end first."""
    async with pool_of(request).acquire() as conn:
        rows = await installer_assignments(conn, principal=principal)
    return [
        InstallerAssignment(
            assignment_id=row["assignment_id"],
            site_id=row["site_id"],
            site_label=row["label"],
            assigned_at=row["assigned_at"],
            expires_at=row["expires_at"],
        )
        for row in rows
    ]


@router.get("/installer/company/assignments", tags=["installer"], summary="My company's assignments (admin)")
async def company_assignments(
    request: Request,
    principal: Installer,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
) -> Page[CompanyAssignment]:
    """Return every assignment of the company's installers, newest first; for the company's admin."""
    if not principal.company_admin or principal.company_id is None:
        raise Problem(403, "this is for the admin of an installer company only")
    before = decode_cursor(cursor, fields={"assignment_id": int})
    async with pool_of(request).acquire() as conn:
        rows = await conn.fetch(
            queries.SELECT_ASSIGNMENTS_OF_COMPANY,
            principal.company_id,
            before["assignment_id"] if before else None,
            limit + 1,
        )
    items = [
        CompanyAssignment(
            **{k: v for k, v in dict(row).items() if k != "username"}, installer_username=row["username"]
        )
        for row in rows[:limit]
    ]
    more = len(rows) > limit
    return Page[CompanyAssignment](
        items=items, next_cursor=encode_cursor(assignment_id=items[-1].assignment_id) if more else None
    )


@router.get("/audit", tags=["privacy officer"], summary="The audit trail")
async def audit_trail(
    request: Request,
    principal: PrivacyOfficer,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
) -> Page[AuditRecord]:
    """Return every recorded read of personal data, newest first; for the privacy officer."""
    before = decode_cursor(cursor, fields={"occurred_at": dt.datetime})
    async with pool_of(request).acquire() as conn:
        rows = await conn.fetch(
            queries.SELECT_AUDIT_TRAIL, before["occurred_at"] if before else None, limit + 1
        )
    items = [AuditRecord(**dict(row)) for row in rows[:limit]]
    more = len(rows) > limit
    return Page[AuditRecord](
        items=items, next_cursor=encode_cursor(occurred_at=items[-1].occurred_at) if more else None
    )
