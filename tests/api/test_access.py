"""Who sees what: every endpoint x every role x someone else's site; the audit trail of others' reads."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from api.app import create_app
from ops.localstack import PostgresCluster
from tests.fixtures.database import Database
from tests.fixtures.portal import (
    Person,
    Portal,
    built_once,
    in_days,
    portal_on_copy,
    portal_settings,
    running_portal,
)

SITE_A_LABEL = "Huize Anna, Kerkstraat 12"
SERIAL_A = "MAXEM-A1B2C3"

# Per endpoint: the people who may use it on site A's resources ("anyone": every signed-in person, on
# their own account). Everyone else must be refused with 403 or 404 and learn nothing.
READERS_OF_A = {"owner-a", "resident-a", "installer-a"}
ALLOWED: dict[tuple[str, str], set[str] | str] = {
    ("POST", "/api/v1/auth/sign-in"): "anyone",
    ("POST", "/api/v1/auth/sign-out"): "anyone",
    ("GET", "/api/v1/account"): "anyone",
    ("PUT", "/api/v1/account/preferences"): "anyone",
    ("PUT", "/api/v1/account/email"): "anyone",
    # Following the link sent to a new address needs no sign-in: the token proves the mailbox.
    ("POST", "/api/v1/account/email/confirm"): "anyone",
    ("GET", "/api/v1/account/sessions"): "anyone",
    ("DELETE", "/api/v1/account/sessions/{session_id}"): "anyone",
    ("DELETE", "/api/v1/account/sessions"): "anyone",
    ("POST", "/api/v1/account/password"): "anyone",
    ("POST", "/api/v1/account/totp"): "anyone",
    ("POST", "/api/v1/account/totp/confirm"): "anyone",
    ("POST", "/api/v1/account/totp/disable"): "anyone",
    ("POST", "/api/v1/account/recovery-codes"): "anyone",
    ("GET", "/api/v1/sites"): "anyone",
    ("GET", "/api/v1/sites/{site_id}"): READERS_OF_A,
    ("GET", "/api/v1/sites/{site_id}/owner"): {"owner-a", "installer-a"},
    ("GET", "/api/v1/sites/{site_id}/address"): {"owner-a", "installer-a"},
    ("PUT", "/api/v1/sites/{site_id}/address"): {"owner-a"},
    ("GET", "/api/v1/sites/{site_id}/gateways"): READERS_OF_A,
    ("GET", "/api/v1/sites/{site_id}/devices"): READERS_OF_A,
    ("GET", "/api/v1/sites/{site_id}/devices/{device_id}/readings"): READERS_OF_A,
    ("GET", "/api/v1/sites/{site_id}/settings"): READERS_OF_A,
    ("GET", "/api/v1/sites/{site_id}/energy/hourly"): READERS_OF_A,
    ("GET", "/api/v1/sites/{site_id}/energy/daily"): READERS_OF_A,
    ("GET", "/api/v1/sites/{site_id}/energy/summary"): READERS_OF_A,
    ("PUT", "/api/v1/sites/{site_id}/settings"): {"owner-a"},
    ("GET", "/api/v1/sites/{site_id}/residents"): {"owner-a"},
    ("POST", "/api/v1/sites/{site_id}/residents"): {"owner-a"},
    ("DELETE", "/api/v1/sites/{site_id}/residents/{grant_id}"): {"owner-a"},
    ("GET", "/api/v1/sites/{site_id}/assignments"): {"owner-a"},
    ("POST", "/api/v1/sites/{site_id}/assignments"): {"owner-a"},
    ("DELETE", "/api/v1/sites/{site_id}/assignments/{assignment_id}"): {"owner-a"},
    ("GET", "/api/v1/sites/{site_id}/access-log"): {"owner-a"},
    # The world's open invitation is owner-b's to resident-a: only she answers it; each lists only their own.
    ("GET", "/api/v1/invitations"): "anyone",
    ("POST", "/api/v1/invitations/{invitation_id}/accept"): {"resident-a"},
    ("POST", "/api/v1/invitations/{invitation_id}/decline"): {"resident-a"},
    ("GET", "/api/v1/installer/assignments"): {
        "installer-a",
        "installer-expired",
        "installer-revoked",
        "admin",
    },
    ("GET", "/api/v1/installer/company/assignments"): {"admin"},
    ("GET", "/api/v1/audit"): {"officer"},
    # Data-subject requests: the one of the world is owner-a's, filed for resident-a.
    ("POST", "/api/v1/privacy/requests"): {"owner-a", "officer"},
    ("GET", "/api/v1/privacy/requests"): "anyone",
    ("GET", "/api/v1/privacy/requests/{request_id}"): {"owner-a", "resident-a", "officer"},
    ("POST", "/api/v1/privacy/requests/{request_id}/status"): {"officer"},
    # Four eyes on erasure (tests/privacy/test_officer_attacks.py: which officer may approve which).
    ("POST", "/api/v1/privacy/requests/{request_id}/proposal"): {"officer"},
    ("POST", "/api/v1/privacy/requests/{request_id}/approval"): {"officer"},
    # Only the subject downloads their access export: not owner-a who filed it, not the officer.
    ("GET", "/api/v1/privacy/requests/{request_id}/download"): {"resident-a"},
    ("GET", "/api/v1/privacy/queue"): {"officer"},
    ("GET", "/api/v1/privacy/subjects"): {"officer"},
    # Each owner sees the privacy spent on their own homes (tests/api/test_research.py: only theirs).
    ("GET", "/api/v1/privacy/spent"): {"owner-a", "owner-b"},
    # Research: the world's project has the researcher as its only researcher.
    ("GET", "/api/v1/research/projects"): {"researcher", "officer"},
    ("POST", "/api/v1/research/projects"): {"officer"},
    ("GET", "/api/v1/research/projects/{project_id}"): {"researcher", "officer"},
    ("POST", "/api/v1/research/projects/{project_id}/grants"): {"officer"},
    ("POST", "/api/v1/research/projects/{project_id}/researchers"): {"officer"},
    ("GET", "/api/v1/research/projects/{project_id}/ledger"): {"researcher", "officer"},
    ("POST", "/api/v1/research/releases/preview"): {"researcher"},
    ("POST", "/api/v1/research/releases"): {"researcher"},
    ("GET", "/api/v1/research/releases"): {"researcher", "officer"},
}
PEOPLE = {
    "owner-a": ("owner", {"holder_name": "A. de Vries"}),
    "owner-b": ("owner", {}),
    "resident-a": ("resident", {"resident_of": "owner-a"}),
    "resident-b": ("resident", {"resident_of": "owner-b"}),
    "installer-a": ("installer", {"company": "Warmte BV"}),
    "installer-expired": ("installer", {"company": "Warmte BV"}),
    "installer-revoked": ("installer", {"company": "Koude BV"}),
    "admin": ("installer", {"company": "Warmte BV", "company_admin": True}),
    "researcher": ("researcher", {}),
    "officer": ("privacy_officer", {}),
}


@dataclass
class World:
    portal: Portal
    site_a: int
    site_b: int
    device_a: int
    grant_a: int
    assignment_a: int
    request_a: int
    project_a: int
    invitation_b: int


def api_routes() -> set[tuple[str, str]]:
    """Every operation of the app's own OpenAPI document."""
    app = create_app(portal_settings(Database("unused", "postgresql://unused", "postgresql://unused")))
    return {(method.upper(), path) for path, item in app.openapi()["paths"].items() for method in item}


@dataclass(frozen=True)
class WorldTemplate:
    """The world built once per module, its database frozen to be copied, its people signed in."""

    database: Database
    people: dict[str, Person]
    site_a: int
    site_b: int
    device_a: int
    grant_a: int
    assignment_a: int
    request_a: int
    project_a: int
    invitation_b: int


async def build_world(database: Database) -> WorldTemplate:
    """Make every person, both sites, a device with readings, grants, assignments and a request."""
    async with running_portal(database) as portal:
        for username, (role, extra) in PEOPLE.items():
            portal.add_person(username, role, **extra)
        site_a = portal.add_site(SITE_A_LABEL, owner="owner-a")
        site_b = portal.add_site("Huize Bert", owner="owner-b")
        portal.sql(
            "INSERT INTO gateways (gateway_serial, vendor, site_id) "
            "VALUES (%s, 'maxem', %s), ('MAXEM-B', 'maxem', %s)",
            SERIAL_A,
            site_a,
            site_b,
        )
        device_a = portal.sql(
            "INSERT INTO devices (gateway_serial, device_key, device_kind) VALUES (%s, 'grid', 'grid') "
            "RETURNING device_id",
            SERIAL_A,
        )[0][0]
        portal.sql(
            "INSERT INTO energy_readings (measured_at, device_id, site_id, value, metric) "
            "SELECT t, %s, %s, 1000 + extract(epoch FROM t) / 3600, 'import_energy_kwh' "
            "FROM generate_series(now() - interval '2 hours', now(), interval '1 minute') t",
            device_a,
            site_a,
        )
        grant_a = portal.sql(
            "INSERT INTO resident_grants (site_id, resident_user_id, invited_username, granted_at, "
            "accepted_at) "
            "SELECT %s, user_id, username, now() - interval '1 day', now() - interval '1 day' FROM users "
            "WHERE username = 'resident-a' RETURNING grant_id",
            site_a,
        )[0][0]

        def assign(installer: str, *, assigned: str, expires: str, revoked: str | None = None) -> int:
            return portal.sql(
                "INSERT INTO installer_assignments (site_id, installer_user_id, company_id, assigned_at, "
                "expires_at, revoked_at) SELECT %s, user_id, installer_company_id, now() + %s::interval, "
                "now() + %s::interval, now() + %s::interval FROM users WHERE username = %s "
                "RETURNING assignment_id",
                site_a,
                assigned,
                expires,
                revoked,
                installer,
            )[0][0]

        invitation_b = portal.sql(
            "INSERT INTO resident_grants (site_id, resident_user_id, invited_username) "
            "SELECT %s, user_id, username FROM users WHERE username = 'resident-a' RETURNING grant_id",
            site_b,
        )[0][0]
        assignment_a = assign("installer-a", assigned="-1 day", expires="10 days")
        assign("installer-expired", assigned="-10 days", expires="-1 hour")
        assign("installer-revoked", assigned="-1 day", expires="10 days", revoked="-1 minute")
        for person in portal.people.values():
            assert (await portal.sign_in(person)).status_code == 200, person.username
        filed = await portal.client.post(
            "/api/v1/privacy/requests",
            json={"kind": "access", "subject_username": "resident-a"},
            headers=portal.people["owner-a"].headers,
        )
        assert filed.status_code == 201, filed.text
        project = await portal.client.post(
            "/api/v1/research/projects",
            json={"name": "Warmtestudie", "researchers": ["researcher"], "rho": 1.0},
            headers=portal.people["officer"].headers,
        )
        assert project.status_code == 201, project.text
        return WorldTemplate(
            database,
            dict(portal.people),
            site_a,
            site_b,
            device_a,
            grant_a,
            assignment_a,
            filed.json()["request_id"],
            project.json()["project_id"],
            invitation_b,
        )


@pytest.fixture(scope="module")
def world_template(
    pg_cluster: PostgresCluster, template_database: str, workdir: Path
) -> Iterator[WorldTemplate]:
    """Build the world once for the module: ten accounts, signed in."""
    with built_once(pg_cluster, template_database, workdir, build_world) as template:
        yield template


@pytest.fixture
async def world(
    pg_cluster: PostgresCluster, world_template: WorldTemplate, workdir: Path
) -> AsyncIterator[World]:
    """A copy of the world for one test: the same people, signed in with the same sessions."""
    template = world_template
    async with portal_on_copy(pg_cluster, template.database, template.people, workdir) as portal:
        yield World(
            portal,
            template.site_a,
            template.site_b,
            template.device_a,
            template.grant_a,
            template.assignment_a,
            template.request_a,
            template.project_a,
            template.invitation_b,
        )


def request_for(world: World, method: str, path: str) -> tuple[str, dict[str, object] | None]:
    url = path.format(
        site_id=world.site_a,
        device_id=world.device_a,
        grant_id=world.grant_a,
        assignment_id=world.assignment_a,
        session_id="00" * 32,
        request_id=world.request_a,
        project_id=world.project_a,
        invitation_id=world.invitation_b,
    )
    bodies: dict[tuple[str, str], dict[str, object]] = {
        ("PUT", "/api/v1/sites/{site_id}/settings"): {"kind": "schedule", "name": "night", "definition": {}},
        ("PUT", "/api/v1/account/email"): {"email": "someone@example.org", "current_password": "x"},
        ("PUT", "/api/v1/sites/{site_id}/address"): {
            "postcode": "1234 AB",
            "latitude": 52.1,
            "longitude": 5.1,
        },
        ("POST", "/api/v1/sites/{site_id}/residents"): {"username": "resident-b"},
        ("POST", "/api/v1/sites/{site_id}/assignments"): {
            "installer_username": "installer-a",
            "expires_at": in_days(5),
        },
        # For resident-a: only owner-a manages a home of theirs.
        ("POST", "/api/v1/privacy/requests"): {"kind": "access", "subject_username": "resident-a"},
        ("POST", "/api/v1/privacy/requests/{request_id}/status"): {"status": "in_progress"},
        ("POST", "/api/v1/privacy/requests/{request_id}/proposal"): {"note": "identity checked"},
        ("POST", "/api/v1/privacy/requests/{request_id}/approval"): {"decision": "approve"},
    }
    today = dt.datetime.now(dt.UTC).date()
    yesterday = today - dt.timedelta(days=1)
    queries = {
        "/api/v1/sites/{site_id}/energy/hourly": f"?start={yesterday}T00:00:00Z&end={today}T00:00:00Z",
        "/api/v1/sites/{site_id}/energy/daily": f"?start={today - dt.timedelta(days=7)}&end={today}",
        "/api/v1/sites/{site_id}/energy/summary": f"?start={today - dt.timedelta(days=7)}&end={today}",
        "/api/v1/privacy/subjects": "?email=resident-a@example.org",
    }
    return url + queries.get(path, ""), bodies.get((method, path))


def test_the_matrix_names_every_endpoint_of_the_api():
    assert api_routes() == set(ALLOWED)


async def test_every_request_for_someone_elses_site_is_refused_and_reveals_nothing(world: World):
    portal = world.portal
    refused = 0
    for (method, path), allowed in ALLOWED.items():
        if allowed == "anyone":
            continue
        url, body = request_for(world, method, path)
        for username, person in portal.people.items():
            if username in allowed:
                continue
            response = await portal.client.request(method, url, json=body, headers=person.headers)
            assert response.status_code in (403, 404), (username, method, url, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            assert set(response.json()) <= {"type", "title", "status", "detail", "instance"}
            assert SITE_A_LABEL not in response.text
            assert SERIAL_A not in response.text
            assert "A. de Vries" not in response.text
            refused += 1
    assert refused > 100
    # Nothing was changed by any of them.
    assert portal.sql("SELECT count(*) FROM system_settings") == [(0,)]
    assert portal.sql(
        "SELECT count(*), count(accepted_at), count(declined_at) FROM resident_grants WHERE ended_at IS NULL"
    ) == [(2, 1, 0)]
    assert portal.sql("SELECT count(*) FROM installer_assignments WHERE revoked_at IS NULL") == [(2,)]
    assert portal.sql("SELECT count(*), min(status) FROM subject_requests") == [(1, "received")]


async def test_those_allowed_to_read_site_a_can(world: World):
    portal = world.portal
    for (method, path), allowed in ALLOWED.items():
        if method != "GET" or allowed == "anyone" or "{site_id}" not in path:
            continue
        url, _ = request_for(world, method, path)
        for username in allowed:
            person = portal.people[username]
            response = await portal.client.get(url, headers=person.headers)
            assert response.status_code == 200, (username, url, response.text)


async def test_the_site_list_holds_only_ones_own_sites(world: World):
    for username in (
        "owner-b",
        "resident-b",
        "installer-expired",
        "installer-revoked",
        "researcher",
        "officer",
    ):
        response = await world.portal.client.get(
            "/api/v1/sites", headers=world.portal.people[username].headers
        )
        assert response.status_code == 200
        assert world.site_a not in [site["site_id"] for site in response.json()]
        assert SITE_A_LABEL not in response.text


async def test_an_installer_sees_a_site_only_while_assigned(world: World):
    portal = world.portal
    installer = portal.people["installer-a"]
    sites = await portal.client.get("/api/v1/sites", headers=installer.headers)
    assert [(s["site_id"], s["access"], s["assignment_id"]) for s in sites.json()] == [
        (world.site_a, "installer", world.assignment_a)
    ]
    mine = await portal.client.get("/api/v1/installer/assignments", headers=installer.headers)
    assert [a["site_id"] for a in mine.json()] == [world.site_a]
    # Reading the home's name in the list is a read of the owner's data too, on the assignment.
    assert portal.sql(
        "SELECT count(*) FROM audit_records WHERE resource = 'site' AND assignment_id = %s",
        world.assignment_a,
    ) == [(2,)]
    # The assignment runs out: from that moment on, the installer sees nothing of the site.
    portal.sql(
        "UPDATE installer_assignments SET expires_at = now() WHERE assignment_id = %s", world.assignment_a
    )
    for url in (f"/api/v1/sites/{world.site_a}", f"/api/v1/sites/{world.site_a}/devices"):
        assert (await portal.client.get(url, headers=installer.headers)).status_code == 404
    assert (await portal.client.get("/api/v1/sites", headers=installer.headers)).json() == []
    assert (await portal.client.get("/api/v1/installer/assignments", headers=installer.headers)).json() == []


async def test_the_owner_assigns_and_revokes_an_installer(world: World):
    portal = world.portal
    owner, installer = portal.people["owner-a"], portal.people["installer-revoked"]
    site = f"/api/v1/sites/{world.site_a}"
    created = await portal.client.post(
        f"{site}/assignments",
        headers=owner.headers,
        json={"installer_username": "installer-revoked", "expires_at": in_days(3)},
    )
    assert created.status_code == 201, created.text
    assignment = created.json()
    assert (assignment["installer_username"], assignment["company_name"], assignment["active"]) == (
        "installer-revoked",
        "Koude BV",
        True,
    )
    assert (await portal.client.get(site, headers=installer.headers)).status_code == 200
    revoked = await portal.client.delete(
        f"{site}/assignments/{assignment['assignment_id']}", headers=owner.headers
    )
    assert revoked.status_code == 204
    assert (await portal.client.get(site, headers=installer.headers)).status_code == 404
    again = await portal.client.delete(
        f"{site}/assignments/{assignment['assignment_id']}", headers=owner.headers
    )
    assert again.status_code == 404


BAD_ASSIGNMENTS = [
    (
        {"installer_username": "installer-a", "expires_at": in_days(-1)},
        "body field expires_at: must be in the future",
    ),
    ({"installer_username": "installer-a", "expires_at": in_days(400)}, "at most a year"),
    (
        {"installer_username": "owner-b", "expires_at": in_days(1)},
        "there is no installer account 'owner-b'",
    ),
    ({"installer_username": "installer-a", "expires_at": "2030-01-01T00:00:00"}, "body field expires_at"),
    ({"installer": "installer-a"}, "body field installer: Extra inputs are not permitted"),
    ({"installer_username": "a\x00b", "expires_at": in_days(1)}, "must not contain the NUL character"),
]


async def test_a_bad_assignment_is_refused_with_a_precise_message(world: World):
    owner = world.portal.people["owner-a"]
    for body, detail in BAD_ASSIGNMENTS:
        response = await world.portal.client.post(
            f"/api/v1/sites/{world.site_a}/assignments", headers=owner.headers, json=body
        )
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
        assert detail in response.json()["detail"]


async def test_every_read_by_someone_else_is_recorded_and_the_owner_sees_it(world: World):
    portal = world.portal
    readings = f"/api/v1/sites/{world.site_a}/devices/{world.device_a}/readings"
    for username in ("owner-a", "resident-a", "installer-a"):
        response = await portal.client.get(readings, headers=portal.people[username].headers)
        assert response.status_code == 200
        assert len(response.json()["items"]) == 100  # a page of the 121 minutes
    records = portal.sql(
        "SELECT u.username, r.actor_role, r.resource, r.assignment_id, s.username "
        "FROM audit_records r JOIN users u ON u.user_id = r.actor_user_id "
        "JOIN users s ON s.user_id = r.subject_user_id WHERE r.action = 'read' ORDER BY r.occurred_at"
    )
    assert records == [
        ("resident-a", "resident", "readings", None, "owner-a"),
        ("installer-a", "installer", "readings", world.assignment_a, "owner-a"),
    ]
    # The installer is given the owner's user data to reach the installation; that read is recorded too.
    contact = await portal.client.get(
        f"/api/v1/sites/{world.site_a}/owner", headers=portal.people["installer-a"].headers
    )
    assert contact.json()["holder_name"] == "A. de Vries"
    resident = await portal.client.get(
        f"/api/v1/sites/{world.site_a}/owner", headers=portal.people["resident-a"].headers
    )
    assert resident.status_code == 403
    assert "A. de Vries" not in resident.text
    assert portal.sql("SELECT resource FROM audit_records ORDER BY occurred_at DESC LIMIT 1") == [("owner",)]
    log = await portal.client.get(
        f"/api/v1/sites/{world.site_a}/access-log", headers=portal.people["owner-a"].headers
    )
    assert [(r["actor"], r["resource"], r["assignment_id"]) for r in log.json()["items"]] == [
        ("installer-a", "owner", world.assignment_a),
        ("installer-a", "readings", world.assignment_a),
        ("resident-a", "readings", None),
    ]
    trail = await portal.client.get("/api/v1/audit", headers=portal.people["officer"].headers)
    # The three reads, and owner-a filing the world's request for resident-a (an action, not a read).
    assert [(r["actor"], r["action"], r["resource"]) for r in trail.json()["items"]] == [
        ("installer-a", "read", "owner"),
        ("installer-a", "read", "readings"),
        ("resident-a", "read", "readings"),
        ("owner-a", "file", "subject_request"),
    ]


async def test_readings_page_with_a_cursor_and_bucket_by_the_hour(world: World):
    portal = world.portal
    owner = portal.people["owner-a"]
    readings = f"/api/v1/sites/{world.site_a}/devices/{world.device_a}/readings"
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 50, **({"cursor": cursor} if cursor else {})}
        page = (await portal.client.get(readings, headers=owner.headers, params=params)).json()
        seen += [item["time"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 121
    assert seen == sorted(seen, key=dt.datetime.fromisoformat)
    hourly = await portal.client.get(readings, headers=owner.headers, params={"resolution": "hour"})
    buckets = hourly.json()["items"]
    assert sum(bucket["samples"] for bucket in buckets) == 121
    assert all(
        dt.datetime.fromisoformat(b["time"]).utcoffset() in (dt.timedelta(hours=1), dt.timedelta(hours=2))
        for b in buckets
    )
    bad = await portal.client.get(readings, headers=owner.headers, params={"cursor": "not-a-cursor"})
    assert (bad.status_code, bad.json()["detail"]) == (
        400,
        "query parameter cursor: not a cursor this endpoint returned",
    )


async def test_the_installer_reads_the_address_the_owner_set_and_the_read_is_recorded(world: World):
    portal = world.portal
    address = f"/api/v1/sites/{world.site_a}/address"
    body = {"street": "Dorpsstraat", "house_number": "12a", "postcode": "3511ab", "city": "Utrecht"}
    owner, installer = portal.people["owner-a"], portal.people["installer-a"]
    stored = await portal.client.put(address, headers=owner.headers, json=body)
    assert stored.status_code == 200, stored.text
    assert (stored.json()["postcode"], stored.json()["postcode_area"]) == ("3511 AB", "3511")
    read = await portal.client.get(address, headers=installer.headers)
    assert read.json()["street"] == "Dorpsstraat"
    assert (await portal.client.get(address, headers=portal.people["resident-a"].headers)).status_code == 403
    assert portal.sql("SELECT resource, assignment_id FROM audit_records WHERE action = 'read'") == [
        ("address", world.assignment_a)
    ]
    for wrong, detail in (
        ({"postcode": "3511"}, "'3511' is not a Dutch postcode like '1234 AB'"),
        ({"latitude": 52.0}, "give both latitude and longitude, or neither"),
        ({"latitude": 91, "longitude": 5}, "latitude"),
    ):
        response = await portal.client.put(address, headers=owner.headers, json=wrong)
        assert response.status_code == 422
        assert detail in response.json()["detail"]
