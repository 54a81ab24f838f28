"""Create the private CA and the certificates of the broker, the ingest service and the gateways."""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from thuis.identity import (
    INGEST_IDENTITY,
    CertPaths,
    IdentityError,
    broker_paths,
    client_paths,
    gateway_paths,
    gateway_serial_problem,
    ingest_identity,
)

log = logging.getLogger(__name__)

CA_VALIDITY = dt.timedelta(days=10 * 365)
LEAF_VALIDITY = dt.timedelta(days=2 * 365)


class CertificateError(Exception):
    """A certificate cannot be issued as asked."""


class CertificateAuthority:
    """The project's private CA, kept in one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.cert_path = directory / "ca.crt"
        self.key_path = directory / "ca.key"

    def exists(self) -> bool:
        """Say whether the CA's certificate and key are both present."""
        return self.cert_path.exists() and self.key_path.exists()

    def create(self, *, common_name: str = "Thuis private CA") -> None:
        """Create a new CA key (EC P-256) and self-signed certificate."""
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        self.directory.mkdir(parents=True, exist_ok=True)
        _write_private_key(self.key_path, key)
        _write_certificate(self.cert_path, cert)

    def issue(
        self,
        *,
        common_name: str,
        paths: CertPaths,
        server_names: tuple[str, ...] = (),
    ) -> None:
        """Issue a leaf certificate: a server certificate when server names are given, else a client one."""
        ca_key = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
            raise CertificateError(f"{self.key_path} is not an EC private key")
        ca_cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server_names else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + LEAF_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
            )
        )
        if server_names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([_general_name(name) for name in server_names]), critical=False
            )
        cert = builder.sign(ca_key, hashes.SHA256())
        paths.cert.parent.mkdir(parents=True, exist_ok=True)
        _write_private_key(paths.key, key)
        _write_certificate(paths.cert, cert)


def init_certificates(directory: Path, *, extra_server_names: tuple[str, ...] = ()) -> list[Path]:
    """Create the CA, the broker's and the ingest service's certificates where missing; return new files."""
    ca = CertificateAuthority(directory)
    created: list[Path] = []
    if not ca.exists():
        ca.create()
        created += [ca.cert_path, ca.key_path]
    broker = broker_paths(directory)
    if not broker.cert.exists():
        names = ("localhost", "127.0.0.1", *extra_server_names)
        ca.issue(common_name="thuis-broker", paths=broker, server_names=tuple(dict.fromkeys(names)))
        created += [broker.cert, broker.key]
    ingest = client_paths(directory, INGEST_IDENTITY)
    if not ingest.cert.exists():
        ca.issue(common_name=INGEST_IDENTITY, paths=ingest)
        created += [ingest.cert, ingest.key]
    return created


def issue_ingest_certificate(directory: Path, worker: int) -> CertPaths:
    """Issue (or keep) the client certificate of an ingest worker."""
    try:
        identity = ingest_identity(worker)
    except IdentityError as err:
        raise CertificateError(str(err)) from None
    ca = CertificateAuthority(directory)
    if not ca.exists():
        raise CertificateError(f"no CA in {directory}; run `thuis certs init --dir {directory}` first")
    paths = client_paths(directory, identity)
    if not paths.cert.exists():
        ca.issue(common_name=identity, paths=paths)
    return paths


def issue_gateway_certificate(directory: Path, gateway_serial: str) -> CertPaths:
    """Issue a client certificate whose CN is the gateway serial."""
    problem = gateway_serial_problem(gateway_serial)
    if problem is not None:
        raise CertificateError(problem)
    ca = CertificateAuthority(directory)
    if not ca.exists():
        raise CertificateError(f"no CA in {directory}; run `thuis certs init --dir {directory}` first")
    paths = gateway_paths(directory, gateway_serial)
    ca.issue(common_name=gateway_serial, paths=paths)
    return paths


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _write_private_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # Create the file with mode 0600 from the start, so the key is never readable by others.
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)


def _write_certificate(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.chmod(0o644)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
