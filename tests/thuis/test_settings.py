"""A configuration that is refused says why, names the variable, and never repeats a secret it was given."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from privacy.keys.crypto import new_keyring, write_keyring
from tests.fixtures.database import Database
from tests.thuis.serving import with_password

# A secret of each kind a process is given, each one recognisable in any output.
DATABASE_PASSWORD = "postgres"  # a placeholder: refused outside development and test
API_KEY = "api-key-f00dfeedcafe-9d2b7e51a4c3-0123456789"
DATABASE_URL = f"postgresql://thuis_api:{DATABASE_PASSWORD}@db-host-7f3e.example:5432/thuis"
SECRETS = (API_KEY, "db-host-7f3e", f":{DATABASE_PASSWORD}@")
# What the portal needs besides: where its links point and its mail goes.
PORTAL_MAIL = {
    "THUIS_PORTAL_URL": "https://thuis.example.org",
    "THUIS_SMTP_HOST": "smtp.example.org",
    "THUIS_SMTP_FROM": "Thuis <noreply@example.org>",
}

COMMANDS = [
    ["ingest"],
    ["api"],
    ["rollup", "run"],
    ["rollup", "serve"],
    ["retention", "run"],
    ["retention", "serve"],
    ["retention", "report"],
    ["retention", "check"],
    ["migrate"],
    ["users", "own", "1", "somebody"],
    ["keys", "status"],
    ["gateway", "register", "BNX-000001", "--vendor", "benext", "--site-id", "1"],
    [
        *("export", "--project", "1", "--requested-by", "1", "--from", "2026-01-01", "--to", "2026-01-02"),
        *("--measures", "grid.import_energy_kwh", "--resolution", "day", "--out", "/nonexistent/x.zip"),
    ],
]


# Every process that serves data needs the erasure ledger; a path that does not exist is an empty ledger.
LEDGER = {"THUIS_ERASURE_LEDGER_FILE": "/nonexistent/erasure-ledger.jsonl"}


def run(command: list[str], *, without: tuple[str, ...] = (), **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("THUIS_")} | LEDGER | env
    for name in without:
        environment.pop(name)
    return subprocess.run(
        [sys.executable, "-m", "cli", *command],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_a_placeholder_database_password_is_refused_without_repeating_any_secret(
    command: list[str], tmp_path: Path
):
    keyring = tmp_path / "keyring.toml"
    write_keyring(keyring, new_keyring("test-1"))
    result = run(
        command,
        THUIS_ENVIRONMENT="production",
        THUIS_DATABASE_URL=DATABASE_URL,
        THUIS_API_SECRET_KEY=API_KEY,
        THUIS_KEYRING_FILE=str(keyring),
        THUIS_MQTT_CA_FILE="/nonexistent/ca.crt",
        THUIS_MQTT_CERT_FILE="/nonexistent/c.crt",
        THUIS_MQTT_KEY_FILE="/nonexistent/c.key",
        **PORTAL_MAIL,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "THUIS_DATABASE_URL carries a placeholder password" in output
    assert "Traceback" not in output
    for secret in SECRETS:
        assert secret not in output, (secret, output)


# Every command that takes --database-url: the same placeholder given there is refused as well.
OVERRIDABLE = [c for c in COMMANDS if c[0] not in ("ingest", "api")]


@pytest.mark.parametrize("command", OVERRIDABLE, ids=lambda c: " ".join(c[:2]))
def test_a_placeholder_on_the_command_line_is_refused_like_one_in_the_environment(
    command: list[str], tmp_path: Path
):
    keyring = tmp_path / "keyring.toml"
    write_keyring(keyring, new_keyring("test-1"))
    good = "postgresql://thuis_api:a-real-password-5b6c@localhost/thuis"
    result = run(
        [*command, "--database-url", DATABASE_URL],
        THUIS_ENVIRONMENT="production",
        THUIS_DATABASE_URL=good,
        THUIS_KEYRING_FILE=str(keyring),
    )
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "THUIS_DATABASE_URL carries a placeholder password" in output
    for secret in (*SECRETS, "a-real-password-5b6c"):
        assert secret not in output, (secret, output)


@pytest.mark.parametrize("command", [["rollup", "run"], ["retention", "check"]], ids=" ".join)
def test_outside_production_a_placeholder_passes_the_settings_and_the_database_refuses_it(
    database: Database, command: list[str]
):
    url = with_password(database.rollup_url if command[0] == "rollup" else database.retention_url, "changeme")
    result = run(command, THUIS_ENVIRONMENT="development", THUIS_DATABASE_URL=url)
    assert result.returncode == 1, result.stderr
    assert "password authentication failed" in result.stderr
    assert "changeme" not in result.stderr


def test_a_secret_that_is_itself_refused_is_named_but_not_shown():
    short_key = "tiny-key-4e8a1c"
    result = run(
        ["api"],
        THUIS_ENVIRONMENT="test",
        THUIS_DATABASE_URL="postgresql://thuis_api:a-real-password-5b6c@localhost/thuis",
        THUIS_API_SECRET_KEY=short_key,
        THUIS_KEYRING_FILE="/nonexistent/keyring.toml",
    )
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "configuration refused: THUIS_API_SECRET_KEY: " in output
    assert short_key not in output
    assert "a-real-password-5b6c" not in output


def test_a_missing_variable_is_named():
    result = run(
        ["ingest"], THUIS_ENVIRONMENT="test", THUIS_DATABASE_URL="postgresql://u:p-9q@localhost/thuis"
    )
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "THUIS_MQTT_CA_FILE is not set" in output
    assert "p-9q" not in output


@pytest.mark.parametrize(
    "command",
    [c for c in COMMANDS if c[0] in ("ingest", "api", "rollup", "export") or c[:2] == ["retention", "run"]],
    ids=lambda c: " ".join(c[:2]),
)
def test_a_process_that_serves_data_refuses_to_start_without_the_erasure_ledger(
    command: list[str], tmp_path: Path
):
    keyring = tmp_path / "keyring.toml"
    write_keyring(keyring, new_keyring("test-1"))
    result = run(
        command,
        without=("THUIS_ERASURE_LEDGER_FILE",),
        THUIS_ENVIRONMENT="test",
        THUIS_DATABASE_URL="postgresql://u:p-9q@localhost/thuis",
        THUIS_API_SECRET_KEY=API_KEY,
        THUIS_KEYRING_FILE=str(keyring),
        THUIS_MQTT_CA_FILE="/nonexistent/ca.crt",
        THUIS_MQTT_CERT_FILE="/nonexistent/c.crt",
        THUIS_MQTT_KEY_FILE="/nonexistent/c.key",
        **PORTAL_MAIL,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "THUIS_ERASURE_LEDGER_FILE" in output
    assert "p-9q" not in output


@pytest.mark.parametrize(
    ("smtp", "said"),
    [
        ({"THUIS_SMTP_PASSWORD": "changeme"}, "THUIS_SMTP_PASSWORD is a placeholder"),
        (
            {"THUIS_SMTP_PASSWORD": "smtp-secret-71c9e2", "THUIS_SMTP_STARTTLS": "false"},
            "THUIS_SMTP_PASSWORD would cross the network in the clear",
        ),
        ({"THUIS_SMTP_FROM": "smtp-secret-71c9e2"}, "THUIS_SMTP_FROM must be an address"),
    ],
    ids=["placeholder", "no-starttls", "sender"],
)
def test_a_refused_mail_setting_is_named_without_its_value(smtp: dict[str, str], said: str, tmp_path: Path):
    keyring = tmp_path / "keyring.toml"
    write_keyring(keyring, new_keyring("test-1"))
    result = run(
        ["api"],
        THUIS_ENVIRONMENT="production",
        THUIS_DATABASE_URL="postgresql://thuis_api:a-real-password-5b6c@localhost/thuis",
        THUIS_API_SECRET_KEY=API_KEY,
        THUIS_KEYRING_FILE=str(keyring),
        **(PORTAL_MAIL | smtp),
    )
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert said in output
    for secret in (API_KEY, "a-real-password-5b6c", *(v for v in smtp.values() if v != "false")):
        assert secret not in output, (secret, output)
