"""Register the simulated gateways and issue their certificates, skipping what already exists."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path

import psycopg

from gateway_sim.fleet import DEFAULT_PREFIX, build_fleet
from ops.certs import issue_gateway_certificate
from ops.registry import create_site, find_gateway, register_gateway
from thuis.identity import CertPaths, Vendor, gateway_paths

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProvisionedGateway:
    """A simulated gateway ready to connect: registered, with a certificate, and what this run added."""

    gateway_serial: str
    vendor: Vendor
    site_id: int
    newly_registered: bool
    certificate: CertPaths
    certificate_issued: bool


def provision(
    conn: psycopg.Connection,
    *,
    certs_dir: Path,
    benext: int,
    maxem: int,
    prefix: str = DEFAULT_PREFIX,
    registered_at: dt.datetime | None = None,
) -> list[ProvisionedGateway]:
    """Give each simulated gateway a site, a registration and a certificate; the caller commits."""
    provisioned = []
    for gateway in build_fleet(benext=benext, maxem=maxem, prefix=prefix):
        serial = gateway.serial
        registered = find_gateway(conn, gateway_serial=serial)
        known = registered is not None
        if registered is None:
            site_id = create_site(conn, label=f"Simulated home {serial}")
            registered = register_gateway(
                conn,
                gateway_serial=serial,
                vendor=gateway.vendor,
                site_id=site_id,
                registered_at=registered_at,
            )
        paths = gateway_paths(certs_dir, serial)
        issue = not (paths.cert.exists() and paths.key.exists())
        if issue:
            paths = issue_gateway_certificate(certs_dir, serial)
        provisioned.append(
            ProvisionedGateway(serial, gateway.vendor, registered.site_id, not known, paths, issue)
        )
    added = sum(gateway.newly_registered for gateway in provisioned)
    issued = sum(gateway.certificate_issued for gateway in provisioned)
    log.info(
        "provisioned %d simulated gateways: %d registered, %d certificates issued",
        len(provisioned),
        added,
        issued,
    )
    return provisioned
