"""Installers' own views, their company admin's, and the privacy officer's audit trail."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import ConnDep, Installer, PrivacyOfficer
from api.pagination import DEFAULT_PAGE, MAX_PAGE, decode_cursor, encode_cursor
from api.problems import PROBLEM_RESPONSES
from api.schemas.common import Page
from api.schemas.staff import AuditRecord, CompanyAssignment, InstallerAssignment
from api.services import staff

router = APIRouter(prefix="/api/v1", responses=PROBLEM_RESPONSES)


@router.get("/installer/assignments", tags=["installer"], summary="The sites I am assigned to now")
async def my_assignments(principal: Installer, conn: ConnDep) -> list[InstallerAssignment]:
    """Return the installer's running assignments, the soonest to end first."""
    return await staff.my_assignments(conn, principal=principal)


@router.get("/installer/company/assignments", tags=["installer"], summary="My company's assignments (admin)")
async def company_assignments(
    principal: Installer,
    conn: ConnDep,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
) -> Page[CompanyAssignment]:
    """Return every assignment of the company's installers, newest first; for the company's admin."""
    before = decode_cursor(cursor, fields={"assignment_id": int})
    items, more = await staff.company_assignments(
        conn, principal=principal, before=before["assignment_id"] if before else None, limit=limit
    )
    return Page[CompanyAssignment](
        items=items, next_cursor=encode_cursor(assignment_id=items[-1].assignment_id) if more else None
    )


@router.get("/audit", tags=["privacy officer"], summary="The audit trail")
async def audit_trail(
    principal: PrivacyOfficer,
    conn: ConnDep,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
) -> Page[AuditRecord]:
    """Return every recorded read of personal data and action on a request, newest first (privacy officer).

    Records about or by an erased person carry a pseudonym in place of their id; none is ever changed or
    deleted before its 2 years have passed.
    """
    before = decode_cursor(cursor, fields={"occurred_at": dt.datetime})
    items, more = await staff.audit_trail(conn, before=before["occurred_at"] if before else None, limit=limit)
    return Page[AuditRecord](
        items=items, next_cursor=encode_cursor(occurred_at=items[-1].occurred_at) if more else None
    )
