"""Request and response bodies of data-subject requests (api/routes/privacy.py), in the OpenAPI document."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, TypeAdapter, field_validator, model_validator

from api.schemas.common import EMAIL_PATTERN, Role, Strict

Username = Annotated[str, Field(min_length=1, max_length=64)]
_POSTCODE = re.compile(r"[1-9][0-9]{3} ?[A-Za-z]{2}")
_IBAN = re.compile(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}")


def _iban_problem(value: str) -> str | None:
    """Return what is wrong with an IBAN (ISO 13616: the mod-97 check), or None."""
    compact = value.replace(" ", "").upper()
    if not _IBAN.fullmatch(compact):
        return f"{value!r} is not an IBAN like 'NL91 ABNA 0417 1643 00'"
    digits = "".join(str(int(char, 36)) for char in compact[4:] + compact[:4])
    if int(digits) % 97 != 1:
        return f"{value!r} is not a valid IBAN: its check digits do not match"
    return None


class NoDetails(Strict):
    """Access and erasure need no details: they are about everything held of the subject."""


class RestrictionDetails(Strict):
    """Start restricting processing (no exports, no marketing), or lift the restriction."""

    action: Literal["start", "lift"]


class ObjectionDetails(Strict):
    """Object to a purpose from now on, or lift the objection."""

    purpose: Literal["marketing", "research"]
    action: Literal["start", "lift"]


class ConsentDetails(Strict):
    """Consent given or withdrawn, with the wording the person was shown."""

    purpose: Literal["analytics_cookies", "marketing", "research"]
    given: bool
    wording: str = Field(min_length=1, max_length=4000)


class RectificationDetails(Strict):
    """New values for the contract holder's details; only the fields given change."""

    holder_name: str | None = Field(default=None, min_length=1, max_length=200)
    initials: str | None = Field(default=None, min_length=1, max_length=20)
    street_address: str | None = Field(default=None, min_length=1, max_length=200)
    postcode: str | None = Field(default=None, max_length=7, examples=["1234 AB"])
    city: str | None = Field(default=None, min_length=1, max_length=100)
    email: Annotated[str, Field(max_length=254, pattern=EMAIL_PATTERN)] | None = None
    bank_account: str | None = Field(default=None, max_length=42, examples=["NL91 ABNA 0417 1643 00"])

    @field_validator("postcode")
    @classmethod
    def _dutch_postcode(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not _POSTCODE.fullmatch(value.strip()):
            raise ValueError(f"{value!r} is not a Dutch postcode like '1234 AB'")
        compact = value.replace(" ", "").upper()
        return f"{compact[:4]} {compact[4:]}"

    @field_validator("bank_account")
    @classmethod
    def _valid_iban(cls, value: str | None) -> str | None:
        if value is None:
            return None
        problem = _iban_problem(value)
        if problem is not None:
            raise ValueError(problem)
        compact = value.replace(" ", "").upper()
        return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))

    @model_validator(mode="after")
    def _something_to_change(self) -> RectificationDetails:
        if not self.model_dump(exclude_none=True):
            raise ValueError("give at least one field to rectify")
        return self


class _Filing(Strict):
    subject_username: Username | None = Field(
        default=None, description="whom the request is about: yourself (leave out) or a resident of your home"
    )


class AccessFiling(_Filing):
    """Access and portability: a ZIP of everything held, with who it was shared with and why."""

    kind: Literal["access"]
    details: NoDetails = Field(default_factory=NoDetails)


class RectificationFiling(_Filing):
    """Rectification of the contract holder's details, done by the privacy officer."""

    kind: Literal["rectification"]
    details: RectificationDetails


class RestrictionFiling(_Filing):
    """Restriction of processing."""

    kind: Literal["restriction"]
    details: RestrictionDetails


class ObjectionFiling(_Filing):
    """Objection to marketing or research."""

    kind: Literal["objection"]
    details: ObjectionDetails


class ConsentFiling(_Filing):
    """Consent given or withdrawn."""

    kind: Literal["consent"]
    details: ConsentDetails


class ErasureFiling(_Filing):
    """Erasure, done by the privacy officer; what a legal duty keeps is named with the date it goes."""

    kind: Literal["erasure"]
    details: NoDetails = Field(default_factory=NoDetails)


RequestFiling = Annotated[
    AccessFiling | RectificationFiling | RestrictionFiling | ObjectionFiling | ConsentFiling | ErasureFiling,
    Field(discriminator="kind"),
]
REQUEST_FILING: TypeAdapter[Any] = TypeAdapter(RequestFiling)


class StatusChange(Strict):
    """The privacy officer moves a request on; completing it does what it asks, refusing needs a note."""

    status: Literal["in_progress", "completed", "refused"]
    note: str | None = Field(default=None, max_length=2000)


class Proposal(Strict):
    """A privacy officer proposes carrying out an erasure; a second privacy officer approves it."""

    note: str | None = Field(default=None, max_length=2000)


class Decision(Strict):
    """A second privacy officer approves a proposed erasure (which carries it out) or rejects the proposal."""

    decision: Literal["approve", "reject"]
    note: str | None = Field(default=None, max_length=2000, description="needed to reject")


class TrailEntry(BaseModel):
    """A change of a request: when, who (null once their account is erased), to which status, and why."""

    at: dt.datetime
    actor_user_id: int | None
    role: str
    status: str
    note: str | None


class SubjectRequest(BaseModel):
    """A data-subject request, its due date and status, and its audit trail."""

    request_id: int
    kind: Literal["access", "rectification", "restriction", "objection", "consent", "erasure"]
    subject_username: str | None = Field(description="null once the subject was erased")
    filed_by_username: str | None
    received_at: dt.datetime
    due_at: dt.datetime
    status: Literal["received", "in_progress", "completed", "refused"]
    closed_at: dt.datetime | None
    days_left: int | None = Field(
        description="days until due, rounded up; negative once overdue; null when closed"
    )
    overdue: bool
    details: dict[str, Any]
    personal_details: dict[str, Any] | None = Field(
        description="rectified values (stored encrypted with the subject's key; null once it is destroyed)"
    )
    outcome: str | None
    trail: list[TrailEntry]
    download_url: str | None = Field(description="the access export, once ready: for its subject only")
    download_until: dt.datetime | None
    proposed_by_username: str | None = Field(
        description="an erasure: the privacy officer who proposed carrying it out"
    )
    proposed_at: dt.datetime | None
    approved_by_username: str | None = Field(
        description="an erasure: the second privacy officer who approved it, which carried it out"
    )
    approved_at: dt.datetime | None
    subject_pseudonym: str | None = Field(
        description="once the subject was erased: the pseudonym the audit records about them carry"
    )


class SubjectAccount(BaseModel):
    """An account found by its email address."""

    user_id: int
    username: str
    role: Role
    created_at: dt.datetime
    closed_at: dt.datetime | None
