"""`thuis migrate`: forward-only, recorded with checksums, idempotent."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from ops.localstack import PostgresCluster
from ops.migrate import MIGRATIONS_DIR, MigrationError, migrate
from tests.fixtures.database import Database


@pytest.fixture
def empty_database(pg_cluster: PostgresCluster):
    name = "thuis_migrations_test"
    with psycopg.connect(pg_cluster.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield pg_cluster.dsn(name)
    with psycopg.connect(pg_cluster.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


def run_cli(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "THUIS_DATABASE_URL": url}
    return subprocess.run(
        [sys.executable, "-m", "cli", *args], env=env, capture_output=True, text=True, check=False
    )


def test_migrate_twice_applies_everything_once(empty_database: str):
    first = run_cli("migrate", url=empty_database)
    assert first.returncode == 0, first.stderr
    assert "applied 0001_schema_v1" in first.stderr
    second = run_cli("migrate", url=empty_database)
    assert second.returncode == 0, second.stderr
    assert "up to date" in second.stderr
    with psycopg.connect(empty_database) as conn:
        versions = [row[0] for row in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
        hypertables = {
            row[0] for row in conn.execute("SELECT hypertable_name FROM timescaledb_information.hypertables")
        }
    assert versions == list(range(1, len(list(MIGRATIONS_DIR.glob("*.sql"))) + 1))
    assert hypertables == {
        "energy_readings",
        "smart_home_readings",
        "gateway_connectivity_events",
        "login_events",
        "audit_records",
    }


def test_an_edited_applied_migration_is_refused(empty_database: str, tmp_path: Path):
    migrations = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, migrations)
    migrate(empty_database, directory=migrations)
    edited = migrations / "0001_schema_v1.sql"
    edited.write_text(edited.read_text() + "\nCREATE TABLE sneaky (id int);\n")
    with pytest.raises(MigrationError, match=r"0001_schema_v1\.sql was changed after it was applied"):
        migrate(empty_database, directory=migrations)
    with psycopg.connect(empty_database) as conn:
        assert conn.execute("SELECT to_regclass('sneaky')").fetchone() == (None,)


def test_migrate_refuses_a_schema_with_a_table_of_no_data_category(empty_database: str):
    assert run_cli("migrate", url=empty_database).returncode == 0
    with psycopg.connect(empty_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE referral_codes (code text, email text)")
    refused = run_cli("migrate", url=empty_database)
    assert refused.returncode == 1
    assert "table 'referral_codes' belongs to no data category" in refused.stderr


def test_a_gap_in_migration_numbers_is_refused(tmp_path: Path):
    (tmp_path / "0001_first.sql").write_text("SELECT 1;")
    (tmp_path / "0003_third.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="expected version 0002 next"):
        migrate("postgresql://unused", directory=tmp_path)


def test_ingest_role_holds_only_what_the_ingest_does(database: Database):
    with psycopg.connect(database.ingest_url) as conn:
        for statement in (
            "SELECT payload FROM quarantine",
            "DELETE FROM energy_readings",
            "SELECT label FROM sites",
            "UPDATE gateways SET site_id = 1",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
            conn.rollback()
