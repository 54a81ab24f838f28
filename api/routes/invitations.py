"""A resident's invitations: an owner's grant to read their home holds once the resident accepts it."""

from __future__ import annotations

from fastapi import APIRouter, Response

from api.deps import ConnDep, Id, SignedIn
from api.problems import PROBLEM_RESPONSES
from api.schemas.sharing import AcceptedInvitation, Invitation
from api.services import sharing

router = APIRouter(prefix="/api/v1/invitations", responses=PROBLEM_RESPONSES, tags=["sharing"])


@router.get("", summary="Invitations to read a home, waiting for my answer (resident)")
async def list_invitations(principal: SignedIn, conn: ConnDep) -> list[Invitation]:
    """Return the owners' invitations to read their homes that wait for the resident's answer."""
    return await sharing.invitations(conn, principal=principal)


@router.post("/{invitation_id}/accept", summary="Accept an invitation (resident)")
async def accept_invitation(principal: SignedIn, conn: ConnDep, invitation_id: Id) -> AcceptedInvitation:
    """Accept an invitation: from now on the resident reads the home, until the owner ends it."""
    return await sharing.accept_invitation(conn, principal=principal, invitation_id=invitation_id)


@router.post("/{invitation_id}/decline", status_code=204, summary="Decline an invitation (resident)")
async def decline_invitation(principal: SignedIn, conn: ConnDep, invitation_id: Id) -> Response:
    """Decline an invitation: the resident gets no access; the owner is not told."""
    await sharing.decline_invitation(conn, principal=principal, invitation_id=invitation_id)
    return Response(status_code=204)
