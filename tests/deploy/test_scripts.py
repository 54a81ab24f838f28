"""The compose scripts do what docker-compose.yml relies on, run here against this machine's database.

deploy/compose/with-secrets.sh turns secret files into variables; migrate.sh lets each role log in with
the password of its file; keys.sh makes and rotates the keyring; scripts/compose-secrets.sh makes the
files. The database logins use the real drivers (libpq through psycopg, asyncpg) with passwords required.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ops.localstack import PostgresCluster
from ops.roles import set_role_password
from privacy.keys.crypto import parse_keyring
from tests.deploy.compose import Stack, environment, load_compose, run_service
from tests.fixtures import database as fixture_passwords

REPO = Path(__file__).resolve().parents[2]
WRAPPER = REPO / "deploy" / "compose" / "with-secrets.sh"
PRINT_SECRETS = """
import json, os
print(json.dumps({name: os.environ.get(name) for name in ("PGPASSWORD", "THUIS_API_SECRET_KEY")}))
"""
ASYNCPG_LOGIN = """
import asyncio, os, asyncpg

async def login():
    connection = await asyncpg.connect(os.environ["THUIS_DATABASE_URL"])
    await connection.close()

asyncio.run(login())
"""
# The passwords the test cluster's other tests log in with; what migrate.sh changes is set back to these.
FIXTURE_PASSWORDS = {
    "thuis_ingest": fixture_passwords.INGEST_PASSWORD,
    "thuis_retention": fixture_passwords.RETENTION_PASSWORD,
    "thuis_rollup": fixture_passwords.ROLLUP_PASSWORD,
    "thuis_api": fixture_passwords.API_PASSWORD,
    "thuis_certs": fixture_passwords.CERTS_PASSWORD,
}


def _wrapped(command: list[str], **variables: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    environment.pop("PGPASSWORD", None)
    return subprocess.run(
        ["/bin/sh", str(WRAPPER), *command],
        env=environment | variables,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _secret(folder: Path, name: str, value: str) -> Path:
    path = folder / name
    path.write_text(value + "\n")  # as an editor leaves it: the newline is not part of the secret
    return path


@pytest.fixture
def stack(pg_cluster: PostgresCluster, template_database: str) -> Iterator[Stack]:
    name = f"thuis_scripts_{secrets.token_hex(4)}"
    with psycopg.connect(pg_cluster.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {template_database}")
    yield Stack(port=pg_cluster.port, database=name)
    with psycopg.connect(pg_cluster.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture
def compose_secrets(tmp_path: Path, pg_cluster: PostgresCluster) -> Path:
    folder = tmp_path / "secrets"
    subprocess.run([REPO / "scripts" / "compose-secrets.sh", folder], check=True, capture_output=True)
    superuser = folder / "postgres_password"
    superuser.chmod(0o600)
    superuser.write_text(pg_cluster.superuser_password)
    return folder


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


def test_the_wrapper_puts_each_secret_file_into_its_variable(tmp_path: Path):
    password, key = secrets.token_hex(12), secrets.token_hex(32)
    done = _wrapped(
        [sys.executable, "-c", PRINT_SECRETS],
        PGPASSWORD_FILE=str(_secret(tmp_path, "db", password)),
        THUIS_API_SECRET_KEY_FILE=str(_secret(tmp_path, "key", key)),
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"PGPASSWORD": password, "THUIS_API_SECRET_KEY": key}


def test_the_wrapper_stops_before_the_service_on_a_missing_or_placeholder_secret(tmp_path: Path):
    marker = tmp_path / "the service ran"
    service = [sys.executable, "-c", f"open({str(marker)!r}, 'w')"]
    for variable, path, why in (
        ("PGPASSWORD_FILE", tmp_path / "missing", "cannot read"),
        ("PGPASSWORD_FILE", _secret(tmp_path, "placeholder", "changeme"), "fewer than 16"),
        ("THUIS_API_SECRET_KEY_FILE", _secret(tmp_path, "short-key", secrets.token_hex(8)), "fewer than 32"),
    ):
        done = _wrapped(service, **{variable: str(path)})
        assert done.returncode == 2
        assert why in done.stderr
        assert str(path) in done.stderr
        assert not marker.exists()


def test_services_log_in_with_the_password_from_their_file_and_not_without(
    stack: Stack, compose: dict[str, Any], tmp_path: Path
):
    def run(role: str, command: list[str], password: str) -> subprocess.CompletedProcess[str]:
        url = f"postgresql://{role}@127.0.0.1:{stack.port}/{stack.database}"
        return _wrapped(
            command, THUIS_DATABASE_URL=url, PGPASSWORD_FILE=str(_secret(tmp_path, role, password))
        )

    retention = [*compose["services"]["retention"]["command"][:1], "check"]
    asyncpg_login = [sys.executable, "-c", ASYNCPG_LOGIN]
    for role, command in (("thuis_retention", ["thuis", *retention]), ("thuis_ingest", asyncpg_login)):
        assert run(role, command, FIXTURE_PASSWORDS[role]).returncode == 0, role
        wrong = run(role, command, secrets.token_hex(12))
        assert wrong.returncode != 0, f"{role} logged in with a wrong password"
        assert "password authentication failed" in wrong.stderr


def test_migrate_lets_each_role_log_in_with_the_password_of_its_file(
    stack: Stack, compose: dict[str, Any], compose_secrets: Path, tmp_path: Path, pg_cluster: PostgresCluster
):
    with psycopg.connect(pg_cluster.dsn("postgres"), autocommit=True) as conn:
        for role in FIXTURE_PASSWORDS:
            set_role_password(conn, role=role, password=secrets.token_hex(16))
    try:
        done = run_service(
            compose, "migrate", stack=stack, volumes=tmp_path / "volumes", secrets=compose_secrets
        )
        assert done.returncode == 0, done.stderr
        for role in compose["services"]["migrate"]["command"]:
            password = (compose_secrets / f"{role.removeprefix('thuis_')}_db_password").read_text()
            url = pg_cluster.dsn(stack.database, user=role, password=password)
            with psycopg.connect(url) as conn:
                assert conn.execute("SELECT current_user").fetchone() == (role,)
    finally:
        with psycopg.connect(pg_cluster.dsn("postgres"), autocommit=True) as conn:
            for role, password in FIXTURE_PASSWORDS.items():
                set_role_password(conn, role=role, password=password)


def test_keys_makes_the_keyring_once_and_rotates_it_for_the_portal_alone(
    stack: Stack, compose: dict[str, Any], compose_secrets: Path, tmp_path: Path
):
    volumes = tmp_path / "volumes"
    owner = environment(compose["services"]["keys"])["THUIS_UID"] if os.geteuid() == 0 else str(os.geteuid())
    uid = {"THUIS_UID": owner}

    def keys(*arguments: str) -> subprocess.CompletedProcess[str]:
        return run_service(
            compose,
            "keys",
            stack=stack,
            volumes=volumes,
            secrets=compose_secrets,
            extra_environment=uid,
            arguments=list(arguments) if arguments else None,
        )

    keyring_file = volumes / "keyring" / "keyring.toml"
    assert keys().returncode == 0
    first = keyring_file.read_bytes()
    assert keys().returncode == 0
    assert keyring_file.read_bytes() == first, "a second start made a new keyring"
    added = keys("add-master", "--id", "m-compose-2")
    assert added.returncode == 0, added.stderr
    keyring = parse_keyring(keyring_file.read_text())
    assert keyring.current == "m-compose-2"
    assert len(keyring.master_keys) == 2
    status = keys("status")  # reads the database as its owner, with the password of the secret file
    assert status.returncode == 0, status.stderr
    for path, mode in ((keyring_file, 0o600), (keyring_file.parent, 0o700)):
        info = path.stat()
        assert (str(info.st_uid), stat.S_IMODE(info.st_mode)) == (owner, mode)


def test_the_secrets_script_makes_strong_files_once(tmp_path: Path):
    folder = tmp_path / "secrets"
    script = REPO / "scripts" / "compose-secrets.sh"
    subprocess.run([script, folder], check=True, capture_output=True)
    made = {path.name: path.read_text() for path in folder.iterdir()}
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name, value in made.items():
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o444
        assert len(value) >= (64 if name == "api_secret_key" else 32), name
    assert len(set(made.values())) == len(made), "two secrets are the same"
    subprocess.run([script, folder], check=True, capture_output=True)
    assert {path.name: path.read_text() for path in folder.iterdir()} == made
