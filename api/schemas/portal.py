"""The portal's request and response bodies, as they appear in the OpenAPI document."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

Role = Literal["owner", "resident", "installer", "researcher", "privacy_officer"]
# One @, something before it, a dot in the domain; what a mailbox accepts is up to the mail server.
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


def _known_time_zone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not an IANA time zone such as 'Europe/Amsterdam'") from None
    return value


class Strict(BaseModel):
    """A request body: unknown fields are refused, so a typo is never silently ignored."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        # PostgreSQL text cannot hold U+0000; refuse it here, where the message can name the field.
        if _holds_nul(data):
            raise ValueError("text must not contain the NUL character (U+0000)")
        return data


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return False


class SignInRequest(Strict):
    """Credentials; `totp_code` (or a recovery code) where two factors apply."""

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)
    totp_code: str | None = Field(default=None, max_length=32)


class SignInResponse(BaseModel):
    """A bearer token: send it as `Authorization: Bearer <token>`. It is shown only this once."""

    token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the kind of token, not a secret
    expires_at: dt.datetime


class Account(BaseModel):
    """The signed-in person."""

    user_id: int
    username: str
    email: str | None
    role: Role
    company_name: str | None
    company_admin: bool
    totp_enabled: bool
    recovery_codes_left: int
    language: Literal["nl", "en"]
    time_zone: str


class EmailChange(Strict):
    """A new email address for the account, or null to remove it."""

    email: Annotated[str, StringConstraints(max_length=254, pattern=EMAIL_PATTERN)] | None


class Preferences(Strict):
    """Display preferences."""

    language: Literal["nl", "en"]
    time_zone: str = Field(max_length=64)

    _zone = field_validator("time_zone")(_known_time_zone)


class SessionInfo(BaseModel):
    """A signed-in browser or API client."""

    session_id: str
    kind: Literal["browser", "api"]
    created_at: dt.datetime
    last_used_at: dt.datetime
    expires_at: dt.datetime
    ip: str | None
    user_agent: str | None
    current: bool


class PasswordChange(Strict):
    """A new password, with the current one."""

    current_password: str = Field(min_length=1, max_length=256)
    new_password: str = Field(min_length=1, max_length=256)


class TotpSetup(BaseModel):
    """A TOTP secret to enter in an authenticator app; it is in force once confirmed with a code."""

    secret: str
    otpauth_uri: str


class TotpConfirm(Strict):
    """The first code of the authenticator app."""

    totp_code: str = Field(min_length=6, max_length=16)


class RecoveryCodes(BaseModel):
    """Single-use codes for when the authenticator is lost; shown only this once."""

    recovery_codes: list[str]


class Site(BaseModel):
    """A home, and how the signed-in person sees it."""

    site_id: int
    label: str
    time_zone: str
    access: Literal["owner", "resident", "installer"]
    assignment_id: int | None = None


class SiteAddressChange(Strict):
    """Where a site is: a Dutch postcode ("1234 AB") and/or coordinates give its coarse cells."""

    street: str | None = Field(default=None, max_length=200)
    house_number: str | None = Field(default=None, max_length=20)
    postcode: str | None = Field(default=None, max_length=7, examples=["1234 AB"])
    city: str | None = Field(default=None, max_length=100)
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)


class SiteAddress(BaseModel):
    """Where a site is, and the coarse cells derived from it (the only location that may ever be shared)."""

    street: str | None
    house_number: str | None
    postcode: str | None
    city: str | None
    latitude: float | None
    longitude: float | None
    postcode_area: str | None = Field(description="the 4-digit postcode area")
    h3_cell: str | None = Field(description="the H3 cell of resolution 7 (about 5 km²)")


class OwnerContact(BaseModel):
    """Who owns a site and where it is: for the owner and the installers assigned to it."""

    holder_name: str
    initials: str | None
    street_address: str | None
    postcode: str | None
    city: str | None
    email: str | None


class Gateway(BaseModel):
    """A gateway of a site."""

    gateway_serial: str
    vendor: Literal["benext", "maxem"]
    registered_at: dt.datetime
    firmware_version: str | None
    last_seen_at: dt.datetime | None
    last_seen_ip: str | None


class Device(BaseModel):
    """A device (Z-Wave node or meter channel) of a site."""

    device_id: int
    gateway_serial: str
    device_key: str
    device_kind: str
    first_seen_at: dt.datetime


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """A page of a list; pass `next_cursor` as `cursor` for the next page (null: this was the last)."""

    items: list[T]
    next_cursor: str | None


class Reading(BaseModel):
    """One reading, or one bucket of readings."""

    time: dt.datetime
    metric: str
    value: float | None = None
    mean: float | None = None
    min: float | None = None
    max: float | None = None
    last: float | None = None
    samples: int | None = None


class SystemSetting(BaseModel):
    """A schedule, rule or notification setting of a site."""

    setting_id: int
    kind: Literal["schedule", "rule", "notification"]
    name: str
    definition: dict[str, Any]
    updated_at: dt.datetime


class SystemSettingChange(Strict):
    """A schedule, rule or notification setting to create or replace."""

    kind: Literal["schedule", "rule", "notification"]
    name: str = Field(min_length=1, max_length=100)
    definition: dict[str, Any]


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


class AccessRecord(BaseModel):
    """A read of a site's personal data by someone other than its owner."""

    occurred_at: dt.datetime
    actor: str | None
    actor_role: str
    action: str
    resource: str
    assignment_id: int | None


class AuditRecord(AccessRecord):
    """A record of the audit trail, as the privacy officer sees it."""

    actor_user_id: int | None
    subject_user_id: int | None
    site_id: int | None
