"""`thuis certs`: a private CA, server and client certificates, keys only readable by their owner."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def thuis(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True, text=True, check=False)


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def common_name(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def test_init_creates_a_ca_a_broker_and_an_ingest_identity(tmp_path: Path):
    result = thuis("certs", "init", "--dir", str(tmp_path), "--san", "broker.example.internal")
    assert result.returncode == 0, result.stderr
    assert "PRIVATE KEY" not in result.stdout + result.stderr
    ca = load(tmp_path / "ca.crt")
    broker = load(tmp_path / "broker.crt")
    ingest = load(tmp_path / "thuis-ingest.crt")
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
    assert ca.public_key().curve.name == "secp256r1"
    for leaf in (broker, ingest):
        leaf.verify_directly_issued_by(ca)
    names = broker.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(names.get_values_for_type(x509.DNSName)) == {"localhost", "broker.example.internal"}
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    usage = ingest.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert common_name(ingest) == "thuis-ingest"
    for key in tmp_path.glob("*.key"):
        assert key.stat().st_mode & 0o777 == 0o600, key


def test_init_twice_keeps_the_existing_ca(tmp_path: Path):
    assert thuis("certs", "init", "--dir", str(tmp_path)).returncode == 0
    before = (tmp_path / "ca.key").read_bytes()
    second = thuis("certs", "init", "--dir", str(tmp_path))
    assert second.returncode == 0
    assert second.stdout == ""
    assert (tmp_path / "ca.key").read_bytes() == before


def test_gateway_certificate_carries_the_serial_as_cn(tmp_path: Path):
    thuis("certs", "init", "--dir", str(tmp_path))
    result = thuis("certs", "gateway", "BNX-000123", "--dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    cert = load(tmp_path / "gateways" / "BNX-000123.crt")
    assert common_name(cert) == "BNX-000123"
    cert.verify_directly_issued_by(load(tmp_path / "ca.crt"))
    assert (tmp_path / "gateways" / "BNX-000123.key").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("serial", "reason"),
    [
        ("benext/+", "must be 3-64 letters"),
        ("#", "must be 3-64 letters"),
        ("thuis-ingest", "reserved prefix"),
    ],
)
def test_gateway_serials_that_could_escape_their_topic_are_refused(tmp_path: Path, serial: str, reason: str):
    thuis("certs", "init", "--dir", str(tmp_path))
    result = thuis("certs", "gateway", serial, "--dir", str(tmp_path))
    assert result.returncode == 2
    assert reason in result.stderr
    assert not (tmp_path / "gateways" / f"{serial}.crt").exists()
