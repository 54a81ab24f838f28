"""Who is who on the wire: gateway serials and vendors, the ingest's identities, where certificates live.

The broker makes a client certificate's CN its username and client id, and the topic tree starts with the
vendor and the serial; every process that checks or builds those names takes them from here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.x509.oid import NameOID

Vendor = Literal["benext", "maxem"]
VENDORS: tuple[Vendor, ...] = ("benext", "maxem")
INGEST_IDENTITY = "thuis-ingest"
# Ingest workers share the load through a shared subscription; each has its own certificate, because the
# broker makes the CN the client id. The broker's ACL lets this many read gateway topics.
MAX_INGEST_WORKERS = 16
# No gateway serial may start with it, so a gateway can never pose as one of Thuis's own identities.
RESERVED_PREFIX = "thuis-"
# A gateway serial becomes the MQTT username and a topic level, so it may hold no '/', '+' or '#'.
GATEWAY_SERIAL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{2,63}$")


class IdentityError(ValueError):
    """A name is not a valid identity, or a certificate names none."""


@dataclass(frozen=True)
class CertPaths:
    """Where the files of one identity live."""

    cert: Path
    key: Path


def ingest_identity(worker: int) -> str:
    """Return the certificate CN of ingest worker `worker`: `thuis-ingest`, `thuis-ingest-2`, ..."""
    if not 1 <= worker <= MAX_INGEST_WORKERS:
        raise IdentityError(f"ingest worker numbers run from 1 to {MAX_INGEST_WORKERS}, not {worker}")
    return INGEST_IDENTITY if worker == 1 else f"{INGEST_IDENTITY}-{worker}"


def gateway_serial_problem(gateway_serial: str) -> str | None:
    """Return why a string cannot be a gateway serial, or None."""
    if not GATEWAY_SERIAL.fullmatch(gateway_serial):
        return (
            f"gateway serial {gateway_serial!r} must be 3-64 letters, digits, '-' or '_', starting with a "
            "letter or digit"
        )
    if gateway_serial.lower().startswith(RESERVED_PREFIX):
        return f"gateway serial {gateway_serial!r} uses the reserved prefix {RESERVED_PREFIX!r}"
    return None


def broker_paths(directory: Path) -> CertPaths:
    """Return where the broker's certificate and key live."""
    return CertPaths(directory / "broker.crt", directory / "broker.key")


def client_paths(directory: Path, identity: str) -> CertPaths:
    """Return where a service identity's client certificate and key live."""
    return CertPaths(directory / f"{identity}.crt", directory / f"{identity}.key")


def gateway_paths(directory: Path, gateway_serial: str) -> CertPaths:
    """Return where a gateway's client certificate and key live."""
    return CertPaths(
        directory / "gateways" / f"{gateway_serial}.crt", directory / "gateways" / f"{gateway_serial}.key"
    )


def certificate_common_name(path: Path) -> str:
    """Return the CN of a PEM certificate: the identity the broker knows its holder by."""
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names:
        raise IdentityError(f"{path} has no common name")
    return str(names[0].value)
