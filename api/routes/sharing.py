"""Who else sees a site: residents the owner grants, installers the owner assigns, and the access log."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query, Response

from api.deps import ConnDep, Id, OwnedSite, SignedIn
from api.pagination import DEFAULT_PAGE, MAX_PAGE, decode_cursor, encode_cursor
from api.problems import PROBLEM_RESPONSES
from api.schemas.common import Page
from api.schemas.sharing import (
    AccessRecord,
    Assignment,
    AssignmentRequest,
    ResidentGrant,
    ResidentGrantRequest,
    ResidentInvited,
)
from api.services import sharing

router = APIRouter(prefix="/api/v1/sites/{site_id}", responses=PROBLEM_RESPONSES, tags=["sharing"])


@router.get("/residents", summary="Residents invited to read the site (owner)")
async def list_residents(site: OwnedSite, conn: ConnDep, include_ended: bool = False) -> list[ResidentGrant]:
    """Return the residents the owner invited: `invited`, then `accepted` (`include_ended`: also ended)."""
    return await sharing.resident_grants(conn, access=site, include_ended=include_ended)


@router.post("/residents", status_code=202, summary="Invite a resident to read the site (owner)")
async def invite_resident(
    site: OwnedSite, principal: SignedIn, body: ResidentGrantRequest, conn: ConnDep
) -> ResidentInvited:
    """Invite a resident's account to read the site, read-only, from the moment they accept.

    The answer is the same whether or not the username is a resident's account.
    """
    return await sharing.invite_resident(
        conn, site_id=site.site_id, owner_user_id=principal.user_id, username=body.username
    )


@router.delete("/residents/{grant_id}", status_code=204, summary="Take a resident's access back (owner)")
async def end_resident_grant(site: OwnedSite, grant_id: Id, conn: ConnDep) -> Response:
    """End a resident's access to the site at once."""
    await sharing.end_resident_grant(conn, site_id=site.site_id, grant_id=grant_id)
    return Response(status_code=204)


@router.get("/assignments", summary="Installers assigned to the site (owner)")
async def list_assignments(site: OwnedSite, conn: ConnDep, include_ended: bool = False) -> list[Assignment]:
    """Return the installers assigned to the site now (with `include_ended`, also past assignments)."""
    return await sharing.assignments(conn, access=site, include_ended=include_ended)


@router.post("/assignments", status_code=201, summary="Assign an installer to the site (owner)")
async def assign_installer(
    site: OwnedSite, principal: SignedIn, body: AssignmentRequest, conn: ConnDep
) -> Assignment:
    """Assign an installer until `expires_at` (at most a year ahead); they see the site until then."""
    sharing.check_assignment_end(body.expires_at)
    async with conn.transaction():
        assignment_id = await sharing.assign_installer(
            conn,
            site_id=site.site_id,
            owner_user_id=principal.user_id,
            installer_username=body.installer_username,
            expires_at=body.expires_at,
        )
        return await sharing.assignment(conn, site_id=site.site_id, assignment_id=assignment_id)


@router.delete("/assignments/{assignment_id}", status_code=204, summary="Revoke an assignment (owner)")
async def revoke_assignment(site: OwnedSite, assignment_id: Id, conn: ConnDep) -> Response:
    """End an installer's assignment at once; from now on they see nothing of the site."""
    await sharing.revoke_assignment(conn, site_id=site.site_id, assignment_id=assignment_id)
    return Response(status_code=204)


@router.get("/access-log", summary="Who read my data (owner)")
async def access_log(
    site: OwnedSite,
    conn: ConnDep,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
) -> Page[AccessRecord]:
    """Return every read of the site's personal data by someone other than the owner, newest first."""
    before = decode_cursor(cursor, fields={"occurred_at": dt.datetime})
    items, more = await sharing.access_log(
        conn, access=site, before=before["occurred_at"] if before else None, limit=limit
    )
    return Page[AccessRecord](
        items=items, next_cursor=encode_cursor(occurred_at=items[-1].occurred_at) if more else None
    )
