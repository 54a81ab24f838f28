"""The portal's web pages, end to end: the real app under uvicorn, driven by a real headless Chromium."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
import time
import zipfile
import zoneinfo

import psycopg
import pytest
from playwright.sync_api import Browser, Page, expect

from api.web.render import safe_next
from tests.fixtures.database import Database
from tests.fixtures.web import WebPortal, screenshot, sign_in

ZONE = zoneinfo.ZoneInfo("Europe/Amsterdam")
SEEDED_HOURS = 72

# scripts/setup.sh installs Debian's Chromium; without it these tests fail rather than pass unseen.
pytestmark = pytest.mark.browser


def seed_energy(web: WebPortal, site_id: int, *, serial: str = "MXM-0001") -> dt.datetime:
    """Give a site a Maxem meter with grid and solar channels and 72 hours of 15-minute meter readings.

    Grid import rises 0.25 kWh every quarter (all day), export 0.2 kWh a quarter from 11:00 to 14:59 and solar
    0.5 kWh a quarter from 09:00 to 16:59 local time. Returns the first reading's time.
    """
    end = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    start = end - dt.timedelta(hours=SEEDED_HOURS)
    daytime = "extract(hour FROM t AT TIME ZONE 'Europe/Amsterdam')"
    with psycopg.connect(web.portal.database.owner_url) as conn:
        conn.execute(
            "INSERT INTO gateways (gateway_serial, vendor, site_id) VALUES (%s, 'maxem', %s)",
            (serial, site_id),
        )
        devices = {}
        for key in ("grid", "solar"):
            row = conn.execute(
                "INSERT INTO devices (gateway_serial, device_key, device_kind, first_seen_at) "
                "VALUES (%s, %s, %s, %s) RETURNING device_id",
                (serial, key, key, start),
            ).fetchone()
            assert row is not None
            devices[key] = row[0]
        for device, metric, increment in (
            ("grid", "import_energy_kwh", "0.25"),
            ("grid", "export_energy_kwh", f"CASE WHEN {daytime} BETWEEN 11 AND 14 THEN 0.2 ELSE 0 END"),
            ("solar", "energy_kwh", f"CASE WHEN {daytime} BETWEEN 9 AND 16 THEN 0.5 ELSE 0 END"),
        ):
            conn.execute(
                "INSERT INTO energy_readings (measured_at, device_id, site_id, value, metric) "  # noqa: S608
                f"SELECT t, %s, %s, 1000 + sum({increment}) OVER (ORDER BY t), %s "
                "FROM generate_series(%s::timestamptz, %s - interval '15 minutes', interval '15 minutes') t",
                (devices[device], site_id, metric, start, end),
            )
        # What the ingest does for the readings it writes: mark their hours for the rollup worker.
        conn.execute(
            "INSERT INTO energy_rollup_pending (device_id, hour) "
            "SELECT DISTINCT device_id, date_trunc('hour', measured_at) FROM energy_readings "
            "WHERE site_id = %s",
            (site_id,),
        )
    roll_up(web.portal.database)
    return start


def roll_up(database: Database) -> None:
    """Run `thuis rollup run` as the rollup role, so the charts read the hourly and daily rollups."""
    subprocess.run(
        [sys.executable, "-m", "cli", "rollup", "run", "--database-url", database.rollup_url],
        env={**os.environ, "THUIS_ENVIRONMENT": "test"},
        check=True,
        capture_output=True,
        timeout=60,
    )


def local_days(start: dt.datetime, hours: int) -> set[str]:
    return {(start + dt.timedelta(hours=h)).astimezone(ZONE).date().isoformat() for h in range(hours)}


def test_an_owner_signs_in_sees_the_wrong_password_message_and_signs_out(web: WebPortal, page: Page):
    anna = web.add_person("anna", "owner")
    web.add_site("Grachtenhuis", owner="anna")
    page.goto(f"{web.base_url}/")
    expect(page).to_have_url(re.compile(r"/sign-in\?next=%2F$"))
    screenshot(page, "sign-in")

    response_statuses: list[int] = []
    page.on("response", lambda r: response_statuses.append(r.status) if r.request.method == "POST" else None)
    sign_in(page, web, anna, password="not my password")
    expect(page.get_by_role("alert")).to_have_text("the username or password is wrong")
    assert response_statuses == [401]

    sign_in(page, web, anna)
    expect(page.get_by_role("heading", name="Grachtenhuis")).to_be_visible()
    cookie = next(c for c in page.context.cookies() if c["name"] == "thuis_session")
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (True, "Lax", "/")
    # The cookie lasts as long as the session can (12 hours after sign-in); the server ends it sooner if idle.
    assert time.time() + 11.9 * 3600 < cookie["expires"] <= time.time() + 12 * 3600 + 2
    outcomes = [row[0] for row in web.sql("SELECT outcome FROM login_events ORDER BY occurred_at")]
    assert outcomes == ["wrong_password", "success"]
    assert web.sql("SELECT kind FROM sessions") == [("browser",)]

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/sign-in$"))
    assert not [c for c in page.context.cookies() if c["name"] == "thuis_session"]
    assert web.sql("SELECT count(*) FROM sessions") == [(0,)]


def test_the_dashboard_charts_the_seeded_readings_per_hour_and_per_day(web: WebPortal, page: Page):
    anna = web.add_person("anna", "owner")
    site_id = web.add_site("Grachtenhuis", owner="anna")
    start = seed_energy(web, site_id)
    sign_in(page, web, anna)
    expect(page).to_have_url(f"{web.base_url}/sites/{site_id}")

    hourly = page.locator("#chart-hourly")
    expect(hourly.locator("rect.bar-import")).to_have_count(SEEDED_HOURS)
    expect(hourly.locator("circle.point-solar")).to_have_count(SEEDED_HOURS)
    first = hourly.locator("g.bucket").first
    assert dt.datetime.fromisoformat(first.get_attribute("data-bucket") or "") == start
    # Export only in the four hours from 11:00, on each of the seeded days' such hours.
    exported_hours = sum(
        1 for h in range(SEEDED_HOURS) if 11 <= (start + dt.timedelta(hours=h)).astimezone(ZONE).hour <= 14
    )
    expect(hourly.locator("rect.bar-export")).to_have_count(exported_hours)

    daily = page.locator("#chart-daily")
    days = sorted(local_days(start, SEEDED_HOURS))
    buckets = daily.locator("g.bucket")
    expect(buckets).to_have_count(len(days))
    assert [(b.get_attribute("data-bucket") or "")[:10] for b in buckets.all()] == days
    # Import over the whole seeded period: the last reading minus the first.
    expect(page.locator(".total-import dd").first).to_have_text(f"{(SEEDED_HOURS * 4 - 1) * 0.25:.1f} kWh")
    expect(page.locator("#devices tbody tr")).to_have_count(2)
    screenshot(page, "dashboard")

    page.get_by_role("link", name="Last year").click()
    expect(page.locator("#chart-daily g.bucket")).to_have_count(len(days))
    assert web.sql("SELECT count(*) FROM audit_records") == [(0,)]  # the owner's own reads are not logged


def test_an_owner_assigns_an_installer_who_sees_the_site_only_while_assigned(
    web: WebPortal, page: Page, browser: Browser
):
    anna = web.add_person("anna", "owner")
    ilse = web.add_person("ilse", "installer", company="Warmte BV")
    site_id = web.add_site("Grachtenhuis", owner="anna")
    seed_energy(web, site_id)
    sign_in(page, web, anna)
    page.get_by_role("link", name="Installers").click()
    expect(page.get_by_text("No installer has been assigned")).to_be_visible()

    page.get_by_label("Installer's username").fill("nobody")
    page.get_by_role("button", name="Assign").click()
    expect(page.get_by_role("alert")).to_have_text("installer: there is no installer account 'nobody'")

    until = (dt.datetime.now(ZONE).date() + dt.timedelta(days=14)).isoformat()
    page.get_by_label("Installer's username").fill("ilse")
    page.get_by_label("Until (inclusive)").fill(until)
    page.get_by_role("button", name="Assign").click()
    until_text = dt.date.fromisoformat(until).strftime("%d %b %Y")
    expect(page.get_by_role("status")).to_have_text(f"Assigned ilse until {until_text}, end of day.")
    rows = page.locator("#assignments tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first.locator(".state")).to_have_text("running")
    screenshot(page, "installers")

    installer_context = browser.new_context(viewport={"width": 1200, "height": 900})
    installer = installer_context.new_page()
    try:
        sign_in(installer, web, ilse)  # an installer needs the TOTP code
        expect(installer).to_have_url(f"{web.base_url}/installer")
        listed = installer.locator("#installer-sites tbody tr")
        expect(listed).to_have_count(1)
        screenshot(installer, "installer")
        listed.get_by_role("link", name="Grachtenhuis").click()
        # While assigned, an installer sees the owner's period: the installation's history included.
        expect(installer.locator("#chart-hourly rect.bar-import")).to_have_count(SEEDED_HOURS)
        expect(installer.get_by_text("your reads are recorded")).to_be_visible()

        page.get_by_role("link", name="Access log").click()
        log_rows = page.locator("#access-log tbody tr")
        # The list of the installer's homes (the home's name), then the home's page: site, readings, devices.
        expect(log_rows).to_have_count(4)
        expect(log_rows.filter(has_text="read site")).to_have_count(2)
        expect(log_rows.filter(has_text="read site").first).to_contain_text("ilse")
        expect(log_rows.filter(has_text="read readings")).to_contain_text("installer")
        screenshot(page, "access-log")

        page.get_by_role("link", name="Installers").click()
        page.get_by_role("button", name="Revoke").click()
        expect(page.get_by_role("status")).to_contain_text("Revoked the assignment of ilse")
        expect(page.locator("#assignments tbody tr .state")).to_contain_text("revoked")
        expect(page.get_by_role("button", name="Revoke")).to_have_count(0)
        revoked = web.sql("SELECT revoked_at IS NOT NULL, ended_at <= now() FROM installer_assignments")
        assert revoked == [(True, True)]

        installer.goto(f"{web.base_url}/installer")
        expect(installer.get_by_text("You are not assigned to any home")).to_be_visible()
        response = installer.goto(f"{web.base_url}/sites/{site_id}")
        assert response is not None
        assert response.status == 404
        expect(installer.get_by_role("heading", name="Not found")).to_be_visible()
    finally:
        installer_context.close()


def test_pages_refuse_people_who_may_not_see_them(web: WebPortal, page: Page, browser: Browser):
    anna = web.add_person("anna", "owner")
    web.add_person("bert", "owner")
    web.add_site("Grachtenhuis", owner="anna")
    web.add_site("Zomerhuisje", owner="anna")
    berts = web.add_site("Bert's flat", owner="bert")
    page.goto(f"{web.base_url}/sites/{berts}/installers")
    expect(page).to_have_url(re.compile(rf"/sign-in\?next=%2Fsites%2F{berts}%2Finstallers$"))
    sign_in(page, web, anna, go_to_form=False)
    expect(page).to_have_url(f"{web.base_url}/sites/{berts}/installers")  # back where she was sent from
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()

    for path, status in (
        (f"/sites/{berts}", 404),
        (f"/sites/{berts}/access-log", 404),
        ("/sites/not-a-number", 404),
        ("/installer", 403),
    ):
        response = page.goto(f"{web.base_url}{path}")
        assert response is not None
        assert (path, response.status) == (path, status)
        assert response.headers["content-type"].startswith("text/html")
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp

    page.goto(f"{web.base_url}/")  # two homes: the list of both, not Bert's
    expect(page.locator(".site-card")).to_have_text([re.compile("Grachtenhuis"), re.compile("Zomerhuisje")])

    # A form posted without the CSRF token is refused even with the session cookie.
    refused = page.request.post(
        f"{web.base_url}/sites/{berts}/installers",
        form={"installer_username": "x", "expires_on": "2030-01-01"},
    )
    assert refused.status == 403
    assert web.sql("SELECT count(*) FROM installer_assignments") == [(0,)]


@pytest.mark.parametrize(
    ("target", "goes_to"),
    [
        ("/sites/1?days=365", "/sites/1?days=365"),
        ("https://evil.example/", "/"),
        ("//evil.example/", "/"),
        ("/\\evil.example/", "/"),
        ("/\t/evil.example/", "/"),  # a browser drops the tab: //evil.example/
        ("/\n/evil.example/", "/"),
        ("", "/"),
    ],
)
def test_after_signing_in_a_person_goes_only_to_a_page_of_the_portal(target: str, goes_to: str):
    assert safe_next(target) == goes_to


def test_an_owner_files_privacy_requests_and_the_officer_works_the_queue(
    web: WebPortal, page: Page, browser: Browser
):
    anna = web.add_person("anna", "owner", email="anna@example.org")
    olga = web.add_person("olga", "privacy_officer")
    oscar = web.add_person("oscar", "privacy_officer")
    web.add_person("rita", "resident", resident_of="anna")
    site_id = web.add_site("Grachtenhuis", owner="anna")
    web.sql(
        "INSERT INTO resident_grants (site_id, resident_user_id, invited_username, accepted_at) "
        "SELECT %s, user_id, username, now() FROM users WHERE username = 'rita'",
        site_id,
    )
    sign_in(page, web, anna)
    page.get_by_role("link", name="Privacy").click()
    page.get_by_role("button", name="Request a copy").click()
    expect(page.get_by_role("status")).to_contain_text("for a copy of the data received: it is completed")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download ZIP").click()
    with zipfile.ZipFile(download.value.path()) as archive:
        assert {"README.txt", "manifest.json", "recipients.json", "user_data.json"} <= set(archive.namelist())

    page.locator("#erasure").get_by_role("button", name="Ask for erasure").click()
    expect(page.get_by_role("alert")).to_contain_text("tick the box to confirm")
    page.locator("#erasure select").select_option("rita")
    page.locator("#erasure").get_by_label("Yes, erase everything that can go").check()
    page.locator("#erasure").get_by_role("button", name="Ask for erasure").click()
    expect(page.get_by_role("status")).to_contain_text("for erasure received: it is received")
    erasure_id = web.sql("SELECT request_id FROM subject_requests WHERE kind = 'erasure'")[0][0]
    # Received 30 days ago: two days past its due date.
    web.sql(
        "UPDATE subject_requests SET received_at = received_at - interval '30 days' WHERE kind = 'erasure'"
    )
    screenshot(page, "privacy")

    officer_context = browser.new_context(viewport={"width": 1200, "height": 900})
    officer = officer_context.new_page()
    try:
        sign_in(officer, web, olga)
        expect(officer).to_have_url(f"{web.base_url}/privacy/queue")  # her start page sends her there
        row = officer.locator(f"#queue tr[data-request='{erasure_id}']")
        expect(row).to_have_class("overdue")
        expect(row.locator(".due")).to_contain_text("overdue 2 days")
        row.get_by_role("button", name="Refuse").click()
        expect(officer.get_by_role("alert")).to_contain_text("say why the request is refused")
        # An erasure takes two officers: Olga proposes it, and cannot approve her own proposal.
        row = officer.locator(f"#queue tr[data-request='{erasure_id}']")
        expect(row.get_by_role("button", name="Complete")).to_have_count(0)
        row.get_by_label(f"Note on proposing request {erasure_id}").fill("identity checked by phone")
        row.get_by_role("button", name="Propose erasure").click()
        expect(officer.get_by_role("status")).to_contain_text(f"Request {erasure_id} is in progress.")
        row = officer.locator(f"#queue tr[data-request='{erasure_id}']")
        expect(row.locator(".state")).to_contain_text("proposed by olga")
        expect(row).to_contain_text("Proposed by you: a second privacy officer approves it.")
        expect(row.get_by_role("button", name="Approve erasure")).to_have_count(0)
    finally:
        officer_context.close()
    assert web.sql("SELECT count(*) FROM users WHERE username = 'rita'") == [(1,)]
    # Oscar, a second officer, approves it on his queue: now it is carried out.
    second_context = browser.new_context(viewport={"width": 1200, "height": 900})
    second = second_context.new_page()
    try:
        sign_in(second, web, oscar)
        row = second.locator(f"#queue tr[data-request='{erasure_id}']")
        screenshot(second, "privacy-queue")
        row.get_by_role("button", name="Approve erasure").click()
        expect(second.get_by_role("status")).to_contain_text(f"Request {erasure_id} is completed: erased")
        expect(second.get_by_text("No open requests.")).to_be_visible()
    finally:
        second_context.close()
    assert web.sql("SELECT count(*) FROM users WHERE username = 'rita'") == [(0,)]
    assert web.sql(
        "SELECT p.username, a.username FROM subject_requests r "
        "JOIN users p ON p.user_id = r.proposed_by_user_id JOIN users a ON a.user_id = r.approved_by_user_id "
        "WHERE r.request_id = %s",
        erasure_id,
    ) == [("olga", "oscar")]
    page.reload()
    expect(page.locator(f"#requests tr[data-request='{erasure_id}'] .state")).to_have_text("completed")
