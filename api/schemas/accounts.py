"""Bodies of signing in and of the signed-in person's own account."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    Field,
    StringConstraints,
    field_validator,
)

from api.schemas.common import EMAIL_PATTERN, Role, Strict, known_time_zone


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
    # A new address asked for, in force once the link sent to it is followed (until the moment given).
    pending_email: str | None
    pending_email_expires_at: dt.datetime | None
    totp_enabled: bool
    recovery_codes_left: int
    language: Literal["nl", "en"]
    time_zone: str


class SecurityProof(Strict):
    """What every security change carries: the current password, and a current code when two factors are on.

    `totp_code` is a code of the authenticator app in use (or one of the recovery codes).
    """

    current_password: str = Field(min_length=1, max_length=256)
    totp_code: str | None = Field(default=None, max_length=32)


class EmailChange(SecurityProof):
    """A new email address (it takes effect once the link sent to it is followed), or null to remove it."""

    email: Annotated[str, StringConstraints(max_length=254, pattern=EMAIL_PATTERN)] | None


class EmailConfirmation(Strict):
    """The token of the link sent to a new address."""

    token: str = Field(min_length=1, max_length=128)


class Preferences(Strict):
    """Display preferences."""

    language: Literal["nl", "en"]
    time_zone: str = Field(max_length=64)

    _zone = field_validator("time_zone")(known_time_zone)


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


class PasswordChange(SecurityProof):
    """A new password, with the current one (and a current code when two factors are on)."""

    new_password: str = Field(min_length=1, max_length=256)


class TotpSetup(BaseModel):
    """A TOTP secret to enter in an authenticator app; it is in force once confirmed with a code."""

    secret: str
    otpauth_uri: str


class TotpConfirm(Strict):
    """The first code of the new authenticator app, with the current password."""

    current_password: str = Field(min_length=1, max_length=256)
    totp_code: str = Field(min_length=6, max_length=16)


class RecoveryCodes(BaseModel):
    """Single-use codes for when the authenticator is lost; shown only this once."""

    recovery_codes: list[str]
