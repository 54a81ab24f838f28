"""Bodies of who else sees a site: resident grants, installer assignments, the access log."""

from __future__ import annotations

import datetime as dt

from pydantic import (
    AwareDatetime,
    BaseModel,
    Field,
)

from api.schemas.common import Strict


class ResidentGrantRequest(Strict):
    """Let a resident (by username) read a site."""

    username: str = Field(min_length=1, max_length=64)


class ResidentGrant(BaseModel):
    """A resident who may read a site."""

    grant_id: int
    username: str | None
    granted_at: dt.datetime
    ended_at: dt.datetime | None


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
