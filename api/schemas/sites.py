"""Bodies of sites and what belongs to them: address, owner contact, gateways, devices, readings."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import (
    BaseModel,
    Field,
)

from api.schemas.common import Strict


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
