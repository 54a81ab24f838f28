"""Register sites and gateways: the records the ingest checks every message against."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import psycopg

from ops import queries
from thuis.identity import GATEWAY_SERIAL, VENDORS, Vendor


class RegistryError(Exception):
    """A site or gateway cannot be registered as asked."""


@dataclass(frozen=True)
class RegisteredGateway:
    """A gateway and the site it belongs to."""

    gateway_serial: str
    vendor: Vendor
    site_id: int


def create_site(conn: psycopg.Connection, *, label: str, time_zone: str = "Europe/Amsterdam") -> int:
    """Create a site and return its id."""
    site_id: int = conn.execute(queries.INSERT_SITE, (label, time_zone)).fetchall()[0][0]
    return site_id


def find_gateway(conn: psycopg.Connection, *, gateway_serial: str) -> RegisteredGateway | None:
    """Return a registered gateway, or None."""
    row = conn.execute(queries.SELECT_GATEWAY, (gateway_serial,)).fetchone()
    return None if row is None else RegisteredGateway(*row)


def register_gateway(
    conn: psycopg.Connection,
    *,
    gateway_serial: str,
    vendor: Vendor,
    site_id: int,
    registered_at: dt.datetime | None = None,
) -> RegisteredGateway:
    """Register a gateway at a site; refuse a malformed or already registered serial."""
    if vendor not in VENDORS:
        raise RegistryError(f"vendor must be one of {', '.join(VENDORS)}, not {vendor!r}")
    if not GATEWAY_SERIAL.fullmatch(gateway_serial):
        raise RegistryError(f"gateway serial {gateway_serial!r} is malformed")
    if find_gateway(conn, gateway_serial=gateway_serial) is not None:
        raise RegistryError(f"gateway {gateway_serial} is already registered")
    conn.execute(queries.INSERT_GATEWAY, (gateway_serial, vendor, site_id, registered_at))
    return RegisteredGateway(gateway_serial, vendor, site_id)


def decommission_gateway(conn: psycopg.Connection, *, gateway_serial: str) -> dt.datetime:
    """Mark a gateway decommissioned (its history stays) and so queue the revocation of its certificates."""
    row = conn.execute(queries.DECOMMISSION_GATEWAY, (gateway_serial,)).fetchone()
    if row is None:
        raise RegistryError(f"gateway {gateway_serial} is not registered")
    decommissioned_at: dt.datetime = row[0]
    return decommissioned_at
