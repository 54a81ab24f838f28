"""What the portal's bodies share: strict request bodies, e-mail and time-zone checks, pages."""

from __future__ import annotations

import zoneinfo
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, model_validator

Role = Literal["owner", "resident", "installer", "researcher", "privacy_officer"]


# One @, something before it, a dot in the domain; what a mailbox accepts is up to the mail server.
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


def known_time_zone(value: str) -> str:
    """Return an IANA time zone name unchanged; refuse anything else."""
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
        if holds_nul(data):
            raise ValueError("text must not contain the NUL character (U+0000)")
        return data


def holds_nul(value: Any) -> bool:
    """Say whether a decoded JSON value holds U+0000 anywhere, keys included."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(holds_nul(k) or holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(holds_nul(item) for item in value)
    return False


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """A page of a list; pass `next_cursor` as `cursor` for the next page (null: this was the last)."""

    items: list[T]
    next_cursor: str | None
