"""Owners share a site: residents read it while granted, settings are the owner's, a company admin sees
the company's assignments; accounts come from `thuis users`."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator

import psycopg
import pytest

from tests.fixtures.database import Database
from tests.fixtures.portal import PASSWORD, Portal, in_days, running_portal


@pytest.fixture
async def portal(database: Database) -> AsyncIterator[Portal]:
    async with running_portal(database) as p:
        yield p


async def test_a_resident_reads_a_site_once_they_accept_and_cannot_change_it(portal: Portal):
    anna = portal.add_person("anna", "owner")
    bram = portal.add_person("bram", "resident", resident_of="anna")
    site = portal.add_site("Huize Anna", owner="anna")
    await portal.sign_in(anna)
    await portal.sign_in(bram)
    url = f"/api/v1/sites/{site}"
    assert (await portal.client.get(url, headers=bram.headers)).status_code == 404
    invited = await portal.client.post(f"{url}/residents", headers=anna.headers, json={"username": "Bram"})
    assert invited.status_code == 202, invited.text
    assert invited.json()["username"] == "bram"
    again = await portal.client.post(f"{url}/residents", headers=anna.headers, json={"username": "bram"})
    assert (again.status_code, again.json()) == (202, invited.json())
    assert (await portal.client.get(url, headers=bram.headers)).status_code == 404  # not accepted yet
    [invitation] = (await portal.client.get("/api/v1/invitations", headers=bram.headers)).json()
    accepted = await portal.client.post(
        f"/api/v1/invitations/{invitation['invitation_id']}/accept", headers=bram.headers
    )
    assert accepted.status_code == 200, accepted.text
    seen = await portal.client.get(url, headers=bram.headers)
    assert (seen.status_code, seen.json()["access"]) == (200, "resident")
    change = await portal.client.put(
        f"{url}/settings", headers=bram.headers, json={"kind": "rule", "name": "x", "definition": {}}
    )
    assert (change.status_code, change.json()["detail"]) == (
        403,
        f"only the owner of site {site} may do this",
    )
    ended = await portal.client.delete(f"{url}/residents/{invitation['invitation_id']}", headers=anna.headers)
    assert ended.status_code == 204
    assert (await portal.client.get(url, headers=bram.headers)).status_code == 404
    history = await portal.client.get(
        f"{url}/residents", headers=anna.headers, params={"include_ended": True}
    )
    assert [(g["username"], g["status"], g["ended_at"] is not None) for g in history.json()] == [
        ("bram", "ended", True)
    ]
    bad = await portal.client.post(f"{url}/residents", headers=anna.headers, json={"username": ""})
    assert (bad.status_code, bad.headers["content-type"]) == (422, "application/problem+json")
    assert bad.json()["detail"].startswith("body field username:")


async def test_the_owner_keeps_the_settings_of_a_site(portal: Portal):
    anna = portal.add_person("anna", "owner")
    site = portal.add_site("Huize Anna", owner="anna")
    await portal.sign_in(anna)
    url = f"/api/v1/sites/{site}/settings"
    schedule = {
        "kind": "schedule",
        "name": "night",
        "definition": {"from": "23:00", "to": "07:00", "setpoint": 16},
    }
    first = await portal.client.put(url, headers=anna.headers, json=schedule)
    assert first.status_code == 200, first.text
    changed = await portal.client.put(
        url, headers=anna.headers, json={**schedule, "definition": {**schedule["definition"], "setpoint": 15}}
    )
    assert changed.json()["setting_id"] == first.json()["setting_id"]
    listed = await portal.client.get(url, headers=anna.headers)
    assert [(s["name"], s["definition"]["setpoint"]) for s in listed.json()] == [("night", 15)]
    wrong = await portal.client.put(url, headers=anna.headers, json={**schedule, "kind": "timer"})
    assert wrong.status_code == 422
    assert wrong.json()["detail"].startswith(
        "body field kind: Input should be 'schedule', 'rule' or 'notification'"
    )


async def test_a_company_admin_sees_the_companys_assignments_and_no_other(portal: Portal):
    portal.add_person("anna", "owner")
    portal.add_person("ilse", "installer", company="Warmte BV")
    portal.add_person("kees", "installer", company="Koude BV")
    admin = portal.add_person("wim", "installer", company="Warmte BV", company_admin=True)
    site = portal.add_site("Huize Anna", owner="anna")
    anna = portal.people["anna"]
    await portal.sign_in(anna)
    for installer in ("ilse", "kees"):
        response = await portal.client.post(
            f"/api/v1/sites/{site}/assignments",
            headers=anna.headers,
            json={"installer_username": installer, "expires_at": in_days(7)},
        )
        assert response.status_code == 201
    await portal.sign_in(admin)
    listed = await portal.client.get("/api/v1/installer/company/assignments", headers=admin.headers)
    assert [(a["installer_username"], a["site_id"], a["active"]) for a in listed.json()["items"]] == [
        ("ilse", site, True)
    ]
    # The admin is not assigned: the assignment list does not let them read the site itself.
    assert (await portal.client.get(f"/api/v1/sites/{site}", headers=admin.headers)).status_code == 404
    ilse = portal.people["ilse"]
    await portal.sign_in(ilse)
    refused = await portal.client.get("/api/v1/installer/company/assignments", headers=ilse.headers)
    assert (refused.status_code, refused.json()["detail"]) == (
        403,
        "this is for the admin of an installer company only",
    )


def test_thuis_users_creates_accounts_and_owners(database: Database):
    def users(*args: str, password: str = PASSWORD) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "cli", "users", *args, "--database-url", database.owner_url]
        environment = {**os.environ, "THUIS_KEYRING_FILE": str(database.keyring_file)}
        return subprocess.run(
            command, input=password + "\n", capture_output=True, text=True, check=False, env=environment
        )

    owner = users("add", "Anna", "--role", "owner", "--email", "anna@example.org")
    assert owner.returncode == 0, owner.stderr
    assert owner.stdout.startswith("created anna (user ")
    assert PASSWORD not in owner.stdout + owner.stderr
    installer = users("add", "ilse", "--role", "installer", "--company", "Warmte BV")
    assert installer.returncode == 0, installer.stderr
    assert "two-factor authentication: otpauth://totp/Thuis:ilse?secret=" in installer.stdout
    assert len(installer.stdout.split("recovery codes: ")[1].split()) == 10
    keys_before = count_rows(database, "subject_keys")
    taken = users("add", "anna", "--role", "owner")
    assert (taken.returncode, taken.stderr.strip()) == (1, "thuis users: the username 'anna' is taken")
    assert count_rows(database, "subject_keys") == keys_before, "a refused account left a data key behind"
    found = users("find", "--email", "  ANNA@example.org ", password="")
    assert (found.returncode, found.stdout.split("\t")[1:]) == (0, ["anna", "owner\n"])
    assert users("find", "--email", "bob@example.org", password="").stdout == ""
    weak = users("add", "bram", "--role", "resident", "--resident-of", "anna", password="short")
    assert weak.stderr.strip() == "thuis users: the password must be at least 12 characters long"
    no_company = users("add", "kees", "--role", "installer")
    assert no_company.stderr.strip() == "thuis users: an installer belongs to an installer company: name it"
    no_site = users("own", "999", "anna", password="")
    assert no_site.stderr.strip() == "thuis users: there is no site 999"
    with psycopg.connect(database.owner_url, autocommit=True) as conn:
        row = conn.execute("INSERT INTO sites (label) VALUES ('Huize') RETURNING site_id").fetchone()
        assert row is not None
        site = str(row[0])
    first = users("own", site, "anna", password="")
    assert (first.returncode, first.stdout.strip()) == (
        0,
        f"site {site} is anna's since the site's beginning",
    )
    # An unknown owner is refused, and leaves the site as it was (its owner, and everything it ends).
    unknown = users("own", site, "nobody", password="")
    assert (unknown.returncode, unknown.stderr.strip()) == (1, "thuis users: there is no owner 'nobody'")
    assert owner_of(database, site) == "anna"
    assert users("add", "bert", "--role", "owner").returncode == 0
    moved = users("own", site, "bert", password="")
    assert moved.returncode == 0, moved.stderr
    assert moved.stdout.startswith(f"site {site} is bert's from ")
    assert moved.stdout.strip().endswith(
        "anna's period ended, with 0 resident grant(s) and 0 installer assignment(s)"
    )
    assert owner_of(database, site) == "bert"


def count_rows(database: Database, table: str) -> int:
    with psycopg.connect(database.owner_url) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608 - a fixed name
        assert row is not None
        return int(row[0])


def owner_of(database: Database, site: str) -> str | None:
    with psycopg.connect(database.owner_url) as conn:
        row = conn.execute(
            "SELECT u.username FROM sites s LEFT JOIN users u ON u.user_id = s.owner_user_id "
            "WHERE s.site_id = %s",
            (int(site),),
        ).fetchone()
        assert row is not None
        owner: str | None = row[0]
        return owner
