"""`thuis sim --provision-only` registers the fleet and issues its certificates without a broker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg

from ops.certs import init_certificates
from ops.localstack import free_port
from tests.fixtures.database import Database


def _provision_only(certs: Path, database_url: str) -> subprocess.CompletedProcess[str]:
    # The port has no broker behind it: publishing anything would fail, so exit 0 proves nothing was tried.
    command = [sys.executable, "-m", "cli", "sim", "--provision-only", "--benext", "2", "--maxem", "1"]
    command += ["--certs", str(certs), "--host", "127.0.0.1", "--port", str(free_port())]
    environment = {**os.environ, "THUIS_DATABASE_URL": database_url, "THUIS_ENVIRONMENT": "test"}
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=60, check=False)


def test_provision_only_registers_and_issues_then_exits_without_a_broker(database: Database, workdir: Path):
    certs = workdir / f"provision-only-{database.name}"
    init_certificates(certs)
    first = _provision_only(certs, database.owner_url)
    assert first.returncode == 0, first.stderr
    serials = {"sim-bnx-000", "sim-bnx-001", "sim-mxm-000"}
    with psycopg.connect(database.owner_url) as conn:
        registered = {row[0] for row in conn.execute("SELECT gateway_serial FROM gateways")}
        sites = conn.execute("SELECT count(*) FROM sites").fetchone()
    assert registered == serials
    issued = {path.name for path in (certs / "gateways").iterdir()}
    assert issued == {f"{serial}.{suffix}" for serial in serials for suffix in ("crt", "key")}
    before = {path.name: path.read_bytes() for path in (certs / "gateways").iterdir()}
    # A second run (a restarted init container) changes nothing: no new site, no new certificate.
    again = _provision_only(certs, database.owner_url)
    assert again.returncode == 0, again.stderr
    assert {path.name: path.read_bytes() for path in (certs / "gateways").iterdir()} == before
    with psycopg.connect(database.owner_url) as conn:
        assert conn.execute("SELECT count(*) FROM sites").fetchone() == sites
