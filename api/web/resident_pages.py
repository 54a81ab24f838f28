"""A resident's invitations: accept or decline an owner's invitation to read their home."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from api.deps import MAX_ID, ConnDep, SignedIn
from api.services import sharing
from api.services.access import preferred_time_zone
from api.web.render import DEFAULT_TIME_ZONE, PageRoute, error_page, page, redirect

router = APIRouter(route_class=PageRoute, include_in_schema=False)

InvitationId = Annotated[int, Path(ge=1, le=MAX_ID)]


@router.get("/invitations")
async def invitations_page(
    request: Request,
    principal: SignedIn,
    conn: ConnDep,
    declined: Annotated[bool, Query()] = False,
) -> Response:
    """Show a resident the invitations that wait for their answer, each with Accept and Decline."""
    if principal.role != "resident":
        return error_page(request, 403, "this page is for residents only", principal)
    waiting = await sharing.invitations(conn, principal=principal)
    zone = await preferred_time_zone(conn, principal=principal)
    return page(
        request,
        "invitations.html",
        principal=principal,
        invitations=waiting,
        time_zone=zone or DEFAULT_TIME_ZONE,
        notice="Declined: you do not see that home." if declined else "",
    )


@router.post("/invitations/{invitation_id}/accept")
async def accept(principal: SignedIn, conn: ConnDep, invitation_id: InvitationId) -> Response:
    """Accept an invitation and go to the home."""
    accepted = await sharing.accept_invitation(conn, principal=principal, invitation_id=invitation_id)
    return redirect(f"/sites/{accepted.site_id}")


@router.post("/invitations/{invitation_id}/decline")
async def decline(principal: SignedIn, conn: ConnDep, invitation_id: InvitationId) -> Response:
    """Decline an invitation and go back to the list."""
    await sharing.decline_invitation(conn, principal=principal, invitation_id=invitation_id)
    return redirect("/invitations?declined=true")
