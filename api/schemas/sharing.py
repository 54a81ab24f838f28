"""Bodies of who else sees a site: resident grants, installer assignments, the access log."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    Field,
)

from api.schemas.common import Strict


class ResidentGrantRequest(Strict):
    """Invite a resident (by username) to read a site; they read it once they accept."""

    username: str = Field(min_length=1, max_length=64)


class ResidentInvited(BaseModel):
    """The answer to an invitation: the same whether or not the username is a resident's account."""

    username: str
    detail: str


class ResidentGrant(BaseModel):
    """A resident invited to read a site: `invited` until they accept, then `accepted`; `ended` once over.

    A declined invitation reads `invited`, as does one to a username that is no resident's account.
    """

    grant_id: int
    username: str | None
    granted_at: dt.datetime
    accepted_at: dt.datetime | None
    ended_at: dt.datetime | None
    status: Literal["invited", "accepted", "ended"]


class Invitation(BaseModel):
    """An owner's invitation to read their home, waiting for the resident's answer."""

    invitation_id: int
    site_id: int
    site_label: str
    invited_by: str | None
    invited_at: dt.datetime


class AcceptedInvitation(BaseModel):
    """An invitation the resident accepted: from now on they read the home, until the owner ends it."""

    invitation_id: int
    site_id: int
    accepted_at: dt.datetime


class AssignmentRequest(Strict):
    """Assign an installer (by username) to a site until a moment."""

    installer_username: str = Field(min_length=1, max_length=64)
    expires_at: AwareDatetime


class Assignment(BaseModel):
    """An installer assigned to a site."""

    assignment_id: int
    site_id: int
    installer_username: str | None
    company_name: str
    assigned_at: dt.datetime
    expires_at: dt.datetime
    revoked_at: dt.datetime | None
    active: bool


class AccessRecord(BaseModel):
    """A read of a site's personal data by someone other than its owner."""

    occurred_at: dt.datetime
    actor: str | None
    actor_role: str
    action: str
    resource: str
    assignment_id: int | None
