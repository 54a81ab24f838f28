"""Each compose service sees only the keys, certificates and secrets it needs.

The one-shot services that fill the volumes (certs, keys) run here, their own entrypoints and commands
against this machine's database, each volume a folder; a service's view is then what its mounts show of
those folders, plus its secrets. A private key is known by the certificate whose public key it matches, so
a key is found wherever it is copied and whatever it is named.
"""

from __future__ import annotations

import copy
import os
import secrets
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from cli.main import build_parser
from cli.sim import configure_parser as configure_sim
from gateway_sim.fleet import build_fleet
from ops.localstack import PostgresCluster
from tests.deploy.compose import (
    PATHS_ELSEWHERE,
    Stack,
    environment,
    load_compose,
    mounts,
    run_service,
    secrets_of,
    view,
)
from tests.deploy.compose import volume_files as files_of
from thuis.identity import INGEST_IDENTITY, certificate_common_name

REPO = Path(__file__).resolve().parents[2]
CA_NAME = "Thuis private CA"
BROKER_NAME = "thuis-broker"
# Independently of the file: what each service must be given, and nothing more.
EXPECTED_SECRETS = {
    "timescaledb": {"postgres_password"},
    "migrate": {
        "postgres_password",
        "ingest_db_password",
        "retention_db_password",
        "rollup_db_password",
        "api_db_password",
        "certs_db_password",
    },
    "certs": {"postgres_password"},
    "keys": {"postgres_password"},
    "mosquitto": set(),
    "ingest": {"ingest_db_password"},
    "retention": {"retention_db_password"},
    "rollup": {"rollup_db_password"},
    "api": {"api_db_password", "api_secret_key"},
    "sim": set(),
    "revocations": {"certs_db_password"},
    "mail": set(),
}


@dataclass(frozen=True)
class Volumes:
    """What the one-shot services left in each volume, and where."""

    root: Path
    contents: dict[str, dict[str, bytes]]


def _fleet(arguments: list[str]) -> set[str]:
    parser, subparsers = build_parser()
    configure_sim(subparsers["sim"])
    args = parser.parse_args(["sim", *arguments])
    return {
        gateway.serial for gateway in build_fleet(benext=args.benext, maxem=args.maxem, prefix=args.prefix)
    }


def simulated_serials(compose: dict[str, Any]) -> set[str]:
    """Return the serials of the fleet the simulator runs (from its command, by the real parser)."""
    return _fleet(compose["services"]["sim"]["command"][1:])


def uids(compose: dict[str, Any]) -> dict[str, str]:
    """Return the owners the certs service gives files to; our own uid where we may not give files away."""
    wanted = {name: environment(compose["services"]["certs"])[name] for name in ("BROKER_UID", "THUIS_UID")}
    return wanted if os.geteuid() == 0 else dict.fromkeys(wanted, str(os.geteuid()))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


@pytest.fixture(scope="module")
def stack(pg_cluster: PostgresCluster, template_database: str) -> Iterator[Stack]:
    name = f"thuis_compose_{secrets.token_hex(4)}"
    with psycopg.connect(pg_cluster.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {template_database}")
    yield Stack(port=pg_cluster.port, database=name)
    with psycopg.connect(pg_cluster.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory: pytest.TempPathFactory, pg_cluster: PostgresCluster) -> Path:
    """Return the secrets as scripts/compose-secrets.sh makes them, the superuser's being our cluster's."""
    folder = tmp_path_factory.mktemp("compose") / "secrets"
    subprocess.run([REPO / "scripts" / "compose-secrets.sh", folder], check=True, capture_output=True)
    superuser = folder / "postgres_password"
    superuser.chmod(0o600)
    superuser.write_text(pg_cluster.superuser_password)
    return folder


@pytest.fixture(scope="module")
def volumes(
    compose: dict[str, Any], stack: Stack, secrets_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Volumes:
    root = tmp_path_factory.mktemp("volumes")
    for name in ("certs", "keys"):
        done = run_service(
            compose, name, stack=stack, volumes=root, secrets=secrets_dir, extra_environment=uids(compose)
        )
        assert done.returncode == 0, f"{name}: {done.stderr}"
    return Volumes(root, {folder.name: files_of(folder) for folder in root.iterdir()})


def certificate_names(contents: dict[str, dict[str, bytes]]) -> dict[bytes, str]:
    """Return the CN of every certificate in any volume, by its public key."""
    names = {}
    for files in contents.values():
        for data in files.values():
            if b"BEGIN CERTIFICATE" in data:
                cert = x509.load_pem_x509_certificate(data)
                common_name = str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)
                names[_public(cert.public_key())] = common_name
    return names


def private_key_owners(seen: dict[str, bytes], names: dict[bytes, str]) -> set[str]:
    """Return whose private keys (by their certificate's CN) are among the files a service sees."""
    owners = set()
    for path, data in seen.items():
        if b"PRIVATE KEY" in data:
            key = serialization.load_pem_private_key(data, password=None)
            owners.add(names.get(_public(key.public_key()), f"an unknown key at {path}"))
    return owners


def _public(key: Any) -> bytes:
    return bytes(
        key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def test_the_one_shot_services_fill_the_volumes_they_hand_out(volumes: Volumes):
    assert {
        "certs",
        "broker-config",
        "broker-crl",
        "ingest-certs",
        "sim-certs",
        "keyring",
        "erasures",
    } <= set(volumes.contents)
    assert "ca.key" in volumes.contents["certs"]


def test_only_the_services_that_issue_or_revoke_see_the_ca_key(compose: dict[str, Any], volumes: Volumes):
    names = certificate_names(volumes.contents)
    assert CA_NAME in names.values()
    holders = {
        service
        for service in compose["services"]
        if CA_NAME in private_key_owners(view(compose, service, volumes.contents), names)
    }
    # The revocation worker signs the CRL with it; the portal, which erases, never holds it.
    assert holders == {"certs", "revocations"}


def test_each_service_sees_the_private_keys_of_its_own_identity_alone(
    compose: dict[str, Any], volumes: Volumes
):
    names = certificate_names(volumes.contents)
    serials = simulated_serials(compose)
    expected = {
        "certs": {CA_NAME, BROKER_NAME, INGEST_IDENTITY, *serials},
        # It holds the CA key, which lets it make any of these anyway; it mounts the CA's folder as is.
        "revocations": {CA_NAME, BROKER_NAME, INGEST_IDENTITY, *serials},
        "mosquitto": {BROKER_NAME},
        "ingest": {INGEST_IDENTITY},
        "sim": serials,
    }
    for service in compose["services"]:
        owners = private_key_owners(view(compose, service, volumes.contents), names)
        assert owners == expected.get(service, set()), service


def test_the_ingest_the_broker_and_the_simulator_see_exactly_their_files(
    compose: dict[str, Any], volumes: Volumes
):
    def seen(service: str) -> set[str]:
        return set(view(compose, service, volumes.contents))

    assert seen("ingest") == {
        "/certs/ca.crt",
        "/certs/thuis-ingest.crt",
        "/certs/thuis-ingest.key",
        "/erasures/erasure-ledger.jsonl",
    }
    broker = {"ca.crt", "broker.crt", "broker.key", "acl", "mosquitto.conf", "broker.sh"}
    assert seen("mosquitto") == {f"/mosquitto/config/{name}" for name in broker} | {"/mosquitto/crl/crl.pem"}
    gateways = {
        f"/certs/gateways/{serial}.{kind}" for serial in simulated_serials(compose) for kind in ("crt", "key")
    }
    assert seen("sim") == {"/certs/ca.crt", *gateways}
    ledger = "/erasures/erasure-ledger.jsonl"  # no personal data: every service checks its database by it
    assert seen("api") == {"/keyring/keyring.toml", ledger}
    for service in ("retention", "rollup", "migrate"):
        assert seen(service) == {ledger}, service
    assert seen("timescaledb") == set()


def test_each_service_gets_only_its_secrets(compose: dict[str, Any]):
    given = {name: set(secrets_of(service)) for name, service in compose["services"].items()}
    assert given == EXPECTED_SECRETS
    assert set(compose["secrets"]) == set().union(*EXPECTED_SECRETS.values())


def test_the_keyring_reaches_the_portal_alone_and_read_only(compose: dict[str, Any]):
    users = {
        name: mount
        for name, service in compose["services"].items()
        for mount in mounts(service)
        if mount.source == "keyring"
    }
    assert set(users) == {"keys", "api"}
    assert users["api"].read_only


def test_services_that_only_read_their_certificates_mount_them_read_only(compose: dict[str, Any]):
    for service in ("ingest", "sim", "mosquitto"):
        for mount in mounts(compose["services"][service]):
            if mount.source != "broker-data":
                assert mount.read_only, f"{service} mounts {mount.source} writable"


def test_only_the_one_shot_issuers_run_as_root(compose: dict[str, Any]):
    as_root = {name for name, service in compose["services"].items() if service.get("user") in {"root", "0"}}
    assert as_root == {"certs", "keys"}
    for name in as_root:
        assert "restart" not in compose["services"][name], f"{name} is not a one-shot service"


def test_every_file_a_service_is_pointed_at_is_in_its_view(compose: dict[str, Any], volumes: Volumes):
    for name, service in compose["services"].items():
        seen = set(view(compose, name, volumes.contents)) | set(secrets_of(service).values())
        folders = {str(Path(path).parent) for path in seen}
        for variable, value in environment(service).items():
            if variable.endswith(("_FILE", "_DIR")) and variable not in PATHS_ELSEWHERE:
                assert value in seen | folders, f"{name}: {variable}={value} is not in its view"


def test_the_certs_service_provisions_the_fleet_the_simulator_runs(compose: dict[str, Any]):
    certs_arguments = compose["services"]["certs"]["command"]
    assert _fleet(certs_arguments) == simulated_serials(compose)
    assert simulated_serials(compose), "the simulator runs no gateway"


def test_the_broker_configuration_names_files_the_broker_sees(compose: dict[str, Any], volumes: Volumes):
    seen = set(view(compose, "mosquitto", volumes.contents))
    config = volumes.contents["broker-config"]["mosquitto.conf"].decode()
    settings = dict(line.split(" ", 1) for line in config.splitlines() if line and not line.startswith("#"))
    for option in ("cafile", "certfile", "keyfile", "acl_file", "crlfile"):
        assert settings[option] in seen, f"mosquitto.conf {option} {settings[option]} is not mounted"
    data_mounts = {mount.target for mount in mounts(compose["services"]["mosquitto"]) if not mount.read_only}
    assert settings["persistence_location"].rstrip("/") in data_mounts


def test_the_ingest_certificate_is_the_ingest_identity_signed_by_the_ca(volumes: Volumes):
    folder = volumes.root / "ingest-certs"
    assert certificate_common_name(folder / "thuis-ingest.crt") == INGEST_IDENTITY
    ca = x509.load_pem_x509_certificate((folder / "ca.crt").read_bytes())
    cert = x509.load_pem_x509_certificate((folder / "thuis-ingest.crt").read_bytes())
    cert.verify_directly_issued_by(ca)
    key = serialization.load_pem_private_key((folder / "thuis-ingest.key").read_bytes(), password=None)
    assert _public(key.public_key()) == _public(cert.public_key())


def test_keys_belong_to_the_user_who_reads_them_and_to_nobody_else(compose: dict[str, Any], volumes: Volumes):
    owners = uids(compose)
    expected = {
        "broker-config/broker.key": owners["BROKER_UID"],
        "ingest-certs/thuis-ingest.key": owners["THUIS_UID"],
        **{f"sim-certs/gateways/{serial}.key": owners["THUIS_UID"] for serial in simulated_serials(compose)},
        "keyring/keyring.toml": owners["THUIS_UID"],
        "erasures/erasure-ledger.jsonl": owners["THUIS_UID"],  # the portal appends to it
        "certs/ca.key": owners["THUIS_UID"],  # the revocation worker signs the CRL with it
    }
    for relative, uid in expected.items():
        info = (volumes.root / relative).stat()
        assert (str(info.st_uid), stat.S_IMODE(info.st_mode)) == (uid, 0o600), relative
    assert stat.S_IMODE((volumes.root / "certs").stat().st_mode) == 0o700
    # The CRL is public; the revocation worker replaces it, the broker reads it.
    crl = (volumes.root / "broker-crl" / "crl.pem").stat()
    assert (str(crl.st_uid), stat.S_IMODE(crl.st_mode)) == (owners["THUIS_UID"], 0o644)
    # The image's user is the one the files are handed to.
    assert "--uid 10001 " in (REPO / "Dockerfile").read_text()
    assert environment(compose["services"]["certs"])["THUIS_UID"] == "10001"


def test_a_second_run_keeps_the_ca_and_every_certificate(
    compose: dict[str, Any], stack: Stack, secrets_dir: Path, volumes: Volumes
):
    done = run_service(
        compose,
        "certs",
        stack=stack,
        volumes=volumes.root,
        secrets=secrets_dir,
        extra_environment=uids(compose),
    )
    assert done.returncode == 0, done.stderr
    for volume in ("certs", "broker-config", "ingest-certs", "sim-certs"):
        assert files_of(volumes.root / volume) == volumes.contents[volume], volume


def test_the_checker_sees_the_ca_key_in_the_reviewed_layout(compose: dict[str, Any], volumes: Volumes):
    # The review's file mounted the volume holding the CA and every key into the ingest and the simulator.
    reviewed = copy.deepcopy(compose)
    for service in ("ingest", "sim"):
        reviewed["services"][service]["volumes"] = ["certs:/certs:ro"]
    names = certificate_names(volumes.contents)
    for service in ("ingest", "sim"):
        owners = private_key_owners(view(reviewed, service, volumes.contents), names)
        assert CA_NAME in owners
        assert simulated_serials(compose) <= owners  # every gateway's key, which the ingest must not hold
    # And the check of each service's keys would fail on it (issue 14, item 10b).
    assert private_key_owners(view(reviewed, "ingest", volumes.contents), names) != {INGEST_IDENTITY}
