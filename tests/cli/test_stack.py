"""`thuis stack up` (behind scripts/up.sh) brings up the whole stack, stores readings, stops cleanly."""

from __future__ import annotations

import mailbox
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from ops.localstack import free_port
from tests.support import COUNT_READINGS

pytestmark = pytest.mark.slow


def test_stack_up_stores_simulated_readings_and_stops_on_ctrl_c(workdir: Path):
    state = workdir / "stack"
    pg_port, mqtt_port, api_port, smtp_port = free_port(), free_port(), free_port(), free_port()
    command = [
        sys.executable,
        "-m",
        "cli",
        "stack",
        "up",
        "--state-dir",
        str(state),
        "--pg-port",
        str(pg_port),
        "--mqtt-port",
        str(mqtt_port),
        "--api-port",
        str(api_port),
        "--smtp-port",
        str(smtp_port),
        "--benext",
        "2",
        "--maxem",
        "2",
        "--rate",
        "40",
    ]
    stack = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        banner = _read_until(stack, "Thuis is running")
        assert f"mqtts://localhost:{mqtt_port}" in banner
        password = (state / "secrets" / "postgres-superuser").read_text().strip()
        assert password not in banner
        url = f"postgresql://postgres:{password}@127.0.0.1:{pg_port}/thuis"
        deadline = time.monotonic() + 30
        stored = 0
        while stored == 0 and time.monotonic() < deadline:
            time.sleep(0.5)
            with psycopg.connect(url) as conn:
                stored = conn.execute(COUNT_READINGS).fetchall()[0][0]
        assert stored > 0
        # The portal is up, and the demo owner sees the simulated homes and their energy.
        portal = f"http://localhost:{api_port}"
        assert f"portal    {portal}/" in banner
        demo_password = (state / "secrets" / "portal-demo-owner").read_text().strip()
        assert demo_password not in banner
        token = _wait_for_token(portal, demo_password)
        sites = httpx.get(f"{portal}/api/v1/sites", headers={"Authorization": f"Bearer {token}"}).json()
        assert len(sites) == 4
        assert {site["access"] for site in sites} == {"owner"}
        # Mail the portal sends lands in the Maildir the banner names: a link to a new address, say.
        maildir = state.resolve() / "mail"
        assert f"{maildir}/new/" in banner
        asked = httpx.put(
            f"{portal}/api/v1/account/email",
            headers={"Authorization": f"Bearer {token}"},
            json={"email": "demo@example.org", "current_password": demo_password},
        )
        assert asked.status_code == 202, asked.text
        deadline = time.monotonic() + 30
        received: list[str] = []
        while not received and time.monotonic() < deadline:
            time.sleep(0.2)
            received = [m.get_payload() for m in mailbox.Maildir(maildir)]
        assert len(received) == 1
        assert f"http://localhost:{api_port}/account/email/confirm?token=" in str(received[0])
        with psycopg.connect(url) as conn:
            deadline = time.monotonic() + 30
            rolled = 0
            while rolled == 0 and time.monotonic() < deadline:
                time.sleep(0.5)
                rolled = conn.execute("SELECT count(*) FROM energy_hourly").fetchall()[0][0]
        assert rolled > 0  # the rollup worker keeps up with the ingest
    finally:
        stack.send_signal(signal.SIGINT)
        output, _ = stack.communicate(timeout=60)
    assert stack.returncode == 0, output
    assert (state / "secrets").stat().st_mode & 0o777 == 0o700
    assert "quarantined 0" in (state / "logs" / "ingest.log").read_text()


def _wait_for_token(portal: str, password: str, timeout_s: float = 30) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            response = httpx.post(
                f"{portal}/api/v1/auth/sign-in", json={"username": "demo-owner", "password": password}
            )
            assert response.status_code == 200, response.text
            token: str = response.json()["token"]
            return token
        except httpx.ConnectError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _read_until(process: subprocess.Popen[str], marker: str, timeout_s: float = 60) -> str:
    assert process.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise AssertionError("stack exited:\n" + "".join(seen))
        seen.append(line)
        if marker in line:
            # The banner goes on for a few lines.
            for _ in range(13):
                seen.append(process.stdout.readline())
            return "".join(seen)
    raise AssertionError(f"no {marker!r} within {timeout_s} s:\n" + "".join(seen))
