"""The private CA: the certificates of the broker, the ingest and the gateways, and the CRL that revokes them.

Every certificate the CA issues is also kept in `issued/<serial>.pem`, so that revoking an identity (a
gateway serial, the CN) finds every certificate it was ever given. The CRL (`crl.pem`, signed by the CA) is
the record of what is revoked; the broker loads a copy of it (`crlfile`) and reads it again on SIGHUP.
"""

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
    GATEWAY_SERIAL,
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
# A CRL says when the next one will come; past that moment OpenSSL (and so the broker) refuses every client
# certificate, so the CRL is signed anew whenever less than CRL_RENEW_BEFORE of it is left.
CRL_VALIDITY = dt.timedelta(days=365)
CRL_RENEW_BEFORE = dt.timedelta(days=30)


class CertificateError(Exception):
    """A certificate cannot be issued as asked."""


class CertificateAuthority:
    """The project's private CA, kept in one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.cert_path = directory / "ca.crt"
        self.key_path = directory / "ca.key"
        self.crl_path = directory / "crl.pem"
        self.issued_dir = directory / "issued"

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
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self.sign_leaf(common_name=common_name, key=key, server_names=server_names)
        paths.cert.parent.mkdir(parents=True, exist_ok=True)
        _write_private_key(paths.key, key)
        _write_certificate(paths.cert, cert)

    def sign_leaf(
        self,
        *,
        common_name: str,
        key: ec.EllipticCurvePrivateKey,
        server_names: tuple[str, ...] = (),
        validity: dt.timedelta = LEAF_VALIDITY,
    ) -> x509.Certificate:
        """Sign a leaf certificate for a key and keep a copy in issued/, so that it can be revoked."""
        ca_key = self._private_key()
        ca_cert = self.certificate()
        now = _now()
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server_names else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + validity)
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
        self.issued_dir.mkdir(mode=0o700, exist_ok=True)
        _write_certificate(self.issued_dir / f"{cert.serial_number:x}.pem", cert)
        return cert

    def certificate(self) -> x509.Certificate:
        """Return the CA's own certificate."""
        return x509.load_pem_x509_certificate(self.cert_path.read_bytes())

    def issued_to(self, common_name: str) -> list[x509.Certificate]:
        """Return every certificate issued to a CN: those in issued/, and one from before issued/ was kept."""
        found = {}
        issuer = self.certificate().subject
        candidates = sorted(self.issued_dir.glob("*.pem")) if self.issued_dir.exists() else []
        # Certificates issued before issued/ was kept are found where they were written.
        candidates += [
            gateway_paths(self.directory, common_name).cert,
            client_paths(self.directory, common_name).cert,
        ]
        for path in candidates:
            if not path.is_file():
                continue
            cert = x509.load_pem_x509_certificate(path.read_bytes())
            names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
            if names and names[0].value == common_name and cert.issuer == issuer:
                found[cert.serial_number] = cert
        return [found[serial] for serial in sorted(found)]

    def revoked(self) -> dict[int, dt.datetime]:
        """Return the serial numbers the CRL revokes, with when each was revoked (none without a CRL)."""
        crl = self.crl()
        if crl is None:
            return {}
        return {entry.serial_number: entry.revocation_date_utc for entry in crl}

    def crl(self) -> x509.CertificateRevocationList | None:
        """Return the CA's current CRL, checked against the CA's key, or None when there is none yet."""
        if not self.crl_path.exists():
            return None
        crl = x509.load_pem_x509_crl(self.crl_path.read_bytes())
        public_key = self.certificate().public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise CertificateError(f"{self.cert_path} does not hold an EC public key")
        if not crl.is_signature_valid(public_key):
            raise CertificateError(f"{self.crl_path} is not signed by this CA; refusing to extend it")
        return crl

    def revoke(self, serial_numbers: list[int]) -> list[int]:
        """Add certificates to the CRL and sign it anew; return the serial numbers newly revoked."""
        revoked = self.revoked()
        new = [serial for serial in dict.fromkeys(serial_numbers) if serial not in revoked]
        now = _now()
        self.write_crl({**revoked, **dict.fromkeys(new, now)})
        return new

    def write_crl(self, revoked: dict[int, dt.datetime] | None = None) -> x509.CertificateRevocationList:
        """Sign a CRL of these revocations (default: those of the current CRL) and replace crl.pem at once."""
        if revoked is None:
            revoked = self.revoked()
        current = self.crl()
        number = 1
        if current is not None:
            number = current.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number + 1
        ca_key = self._private_key()
        now = _now()
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.certificate().subject)
            .last_update(now - dt.timedelta(minutes=5))
            .next_update(now + CRL_VALIDITY)
            .add_extension(x509.CRLNumber(number), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
            )
        )
        for serial, when in sorted(revoked.items()):
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
            )
        crl = builder.sign(ca_key, hashes.SHA256())
        publish_crl(crl, self.crl_path)
        return crl

    def crl_needs_renewal(self, *, now: dt.datetime | None = None) -> bool:
        """Say whether the CRL is missing or runs out within CRL_RENEW_BEFORE."""
        crl = self.crl()
        next_update = crl.next_update_utc if crl is not None else None
        return next_update is None or next_update - (now or _now()) < CRL_RENEW_BEFORE

    def _private_key(self) -> ec.EllipticCurvePrivateKey:
        ca_key = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
            raise CertificateError(f"{self.key_path} is not an EC private key")
        return ca_key


def publish_crl(crl: x509.CertificateRevocationList, path: Path) -> None:
    """Write a CRL (public: mode 0644) so that a reader sees the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    staging.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    staging.chmod(0o644)
    staging.replace(path)


def issued_certificates(ca: CertificateAuthority, common_name: str) -> list[x509.Certificate]:
    """Return the certificates issued to a gateway serial (or identity); refuse a name it never issued to."""
    if not GATEWAY_SERIAL.fullmatch(common_name):
        raise CertificateError(f"{common_name!r} is not a gateway serial or a Thuis identity")
    if not ca.exists():
        raise CertificateError(f"no CA in {ca.directory}; run `thuis certs init --dir {ca.directory}` first")
    issued = ca.issued_to(common_name)
    if not issued:
        raise CertificateError(f"the CA in {ca.directory} issued no certificate to {common_name!r}")
    return issued


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
    if not ca.crl_path.exists():
        ca.write_crl({})  # the broker refuses to start without the CRL it is configured with
        created.append(ca.crl_path)
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
