"""schemathesis against the portal's own OpenAPI document: no generated request gets a 5xx."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
import uvicorn

from api.app import create_app
from ops.accounts import create_account, current_totp, set_site_owner
from ops.localstack import free_port
from ops.registry import create_site
from tests.fixtures.database import Database
from tests.fixtures.portal import PASSWORD, portal_settings
from tests.privacy.population import homes_in, seed
from tests.support import as_owner

ST = Path(sys.executable).with_name("st")


@pytest.fixture
def served_portal(database: Database) -> Iterator[str]:
    """The portal served by uvicorn on a free port, with an owner's site and a device to be found."""
    as_owner(
        database.owner_url, create_account, database.keyring, username="anna", password=PASSWORD, role="owner"
    )
    with psycopg.connect(database.owner_url, autocommit=True) as conn:
        site_id = create_site(conn, label="Huize Anna")
        as_owner(database.owner_url, set_site_owner, site_id=site_id, owner="anna")
        conn.execute(
            "INSERT INTO gateways (gateway_serial, vendor, site_id) VALUES ('MAXEM-1', 'maxem', %s)",
            (site_id,),
        )
        conn.execute(
            "INSERT INTO devices (gateway_serial, device_key, device_kind) VALUES ('MAXEM-1', 'grid', 'grid')"
        )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(portal_settings(database)), host="127.0.0.1", port=port, log_config=None)
    )
    thread = threading.Thread(target=server.run, name="portal", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the portal did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def schemathesis(base_url: str, token: str, *options: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run schemathesis against the portal's OpenAPI document as the holder of a token."""
    command = [
        str(ST),
        "run",
        f"{base_url}/api/openapi.json",
        "--checks",
        "not_a_server_error",
        "--header",
        f"Authorization: Bearer {token}",
        *options,
        "--workers",
        "1",
        "--seed",
        "20261130",
        "--phases",
        "examples,coverage,fuzzing",
    ]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
        cwd=cwd,
        env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_TELEMETRY": "false"},
    )


@pytest.mark.slow
def test_no_generated_request_gets_a_server_error(served_portal: str, tmp_path: Path):
    token = httpx.post(
        f"{served_portal}/api/v1/auth/sign-in", json={"username": "anna", "password": PASSWORD}
    ).json()["token"]
    result = schemathesis(
        served_portal,
        token,
        # Ending the session or the password would sign the run itself out halfway.
        "--exclude-path",
        "/api/v1/auth/sign-out",
        "--exclude-path",
        "/api/v1/account/sessions",
        "--exclude-path",
        "/api/v1/account/password",
        "--max-examples",
        "30",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    summary = re.search(r"(\d+) generated, (\d+) passed", result.stdout)
    tested = re.search(r"Tested: (\d+)", result.stdout)
    assert summary is not None, result.stdout[-3000:]
    assert tested is not None, result.stdout[-3000:]
    # Requests were really generated and checked, for every operation but the three left out.
    assert int(summary[1]) == int(summary[2]) > 500
    paths = httpx.get(f"{served_portal}/api/openapi.json").json()["paths"]
    left_out = {"/api/v1/auth/sign-out", "/api/v1/account/sessions", "/api/v1/account/password"}
    operations = sum(len(item) for path, item in paths.items() if path not in left_out)
    assert int(tested[1]) == operations


@pytest.mark.slow
def test_no_generated_research_request_gets_a_server_error(
    served_portal: str, database: Database, tmp_path: Path
):
    """As the officer and as a researcher of a project over real homes: the owner above is refused them all.

    It found a budget of rho = 5e-324, accepted and then a 500 on every read of the project (OpenDP's
    epsilon overflowed), and a preview at rho = 1e-30 (its noise scale did).
    """
    seed(database, homes_in({"1011": 12, "3511": 10}))
    officer = as_owner(
        database.owner_url,
        create_account,
        database.keyring,
        username="olga",
        password=PASSWORD,
        role="privacy_officer",
    )
    as_owner(
        database.owner_url,
        create_account,
        database.keyring,
        username="rosa",
        password=PASSWORD,
        role="researcher",
    )
    assert officer.totp_secret is not None
    sign_in = f"{served_portal}/api/v1/auth/sign-in"
    olga = httpx.post(
        sign_in,
        json={"username": "olga", "password": PASSWORD, "totp_code": current_totp(officer.totp_secret)},
    ).json()["token"]
    rosa = httpx.post(sign_in, json={"username": "rosa", "password": PASSWORD}).json()["token"]
    made = httpx.post(
        f"{served_portal}/api/v1/research/projects",
        json={"name": "Warmtestudie", "researchers": ["rosa"], "rho": 50},
        headers={"Authorization": f"Bearer {olga}"},
    )
    assert made.status_code == 201, made.text
    for token in (olga, rosa):
        result = schemathesis(
            served_portal,
            token,
            "--include-path-regex",
            "^/api/v1/(research/|privacy/spent)",
            "--max-examples",
            "40",
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
        summary = re.search(r"(\d+) generated, (\d+) passed", result.stdout)
        assert summary is not None, result.stdout[-3000:]
        assert int(summary[1]) == int(summary[2]) > 300
