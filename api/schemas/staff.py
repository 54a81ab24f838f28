"""Bodies of the installers' and the privacy officer's own views."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field

from api.schemas.sharing import AccessRecord


class InstallerAssignment(BaseModel):
    """A site an installer is assigned to now."""

    assignment_id: int
    site_id: int
    site_label: str
    assigned_at: dt.datetime
    expires_at: dt.datetime


class CompanyAssignment(BaseModel):
    """An assignment of one of the company's installers."""

    assignment_id: int
    site_id: int
    installer_username: str | None
    assigned_at: dt.datetime
    expires_at: dt.datetime
    revoked_at: dt.datetime | None
    active: bool


class AuditRecord(AccessRecord):
    """A record of the audit trail (a read or an action), as the privacy officer sees it."""

    actor_user_id: int | None
    subject_user_id: int | None
    site_id: int | None
    detail: str | None
    actor_pseudonym: str | None = Field(description="who acted, once erased: their pseudonym")
    subject_pseudonym: str | None = Field(description="whose data it was, once erased: their pseudonym")
