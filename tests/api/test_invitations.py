"""Residents who accept: an owner's grant is an invitation until the resident accepts it, its answer says
nothing about whether a username exists, an owner files requests only for residents who accepted a grant to
one of their homes, and a resident's access ZIP holds nothing from outside the time they could read it.

Anna owns Grachtenhuis and Rita lives there; Bert owns another flat and Rob lives there. Anna is the
adversary of the issue: she tries to reach Rob (Bert's resident) and to learn which usernames exist.
"""

from __future__ import annotations

import io
import json
import re
import statistics
import time
import zipfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ops.localstack import PostgresCluster
from tests.fixtures.database import Database
from tests.fixtures.portal import Person, Portal, built_once, portal_on_copy, running_portal

SERIAL = "MAXEM-GRACHT1"
LATE_IP = "203.0.113.50"
IN_WINDOW = 7777.0  # the value of every reading stored while Rita could read the home


@dataclass
class World:
    portal: Portal
    anna: Person
    bert: Person
    rita: Person
    rob: Person
    olga: Person
    site_id: int  # Anna's Grachtenhuis
    bert_site: int

    async def invite(self, owner: Person, username: str, site_id: int | None = None) -> httpx.Response:
        return await self.portal.client.post(
            f"/api/v1/sites/{site_id or self.site_id}/residents",
            headers=owner.headers,
            json={"username": username},
        )

    async def invitations(self, person: Person) -> list[dict[str, Any]]:
        response = await self.portal.client.get("/api/v1/invitations", headers=person.headers)
        assert response.status_code == 200, response.text
        result: list[dict[str, Any]] = response.json()
        return result

    async def answer(self, person: Person, invitation_id: int, answer: str) -> httpx.Response:
        return await self.portal.client.post(
            f"/api/v1/invitations/{invitation_id}/{answer}", headers=person.headers
        )

    async def file_access(self, owner: Person, username: str) -> httpx.Response:
        return await self.portal.client.post(
            "/api/v1/privacy/requests",
            headers=owner.headers,
            json={"kind": "access", "subject_username": username},
        )


@dataclass(frozen=True)
class Template:
    """The people and homes, made and signed in once per module (accounts cost seconds), to be copied."""

    database: Database
    people: dict[str, Person]
    site_id: int
    bert_site: int


async def build(database: Database) -> Template:
    async with running_portal(database) as portal:
        portal.add_person("anna", "owner", email="anna@example.org")
        portal.add_person("bert", "owner")
        portal.add_person("rita", "resident", resident_of="anna", email="rita@example.org")
        portal.add_person("rob", "resident", resident_of="bert")
        portal.add_person("olga", "privacy_officer")
        site_id = portal.add_site("Grachtenhuis", owner="anna")
        bert_site = portal.add_site("Flat van Bert", owner="bert")
        for person in portal.people.values():
            assert (await portal.sign_in(person)).status_code == 200
        return Template(database, dict(portal.people), site_id, bert_site)


@pytest.fixture(scope="module")
def template(pg_cluster: PostgresCluster, template_database: str, workdir: Path) -> Iterator[Template]:
    with built_once(pg_cluster, template_database, workdir, build) as built:
        yield built


@pytest.fixture
async def world(pg_cluster: PostgresCluster, template: Template, workdir: Path) -> AsyncIterator[World]:
    async with portal_on_copy(pg_cluster, template.database, template.people, workdir) as portal:
        yield World(
            portal,
            *(portal.people[name] for name in ("anna", "bert", "rita", "rob", "olga")),
            template.site_id,
            template.bert_site,
        )


async def test_a_grant_gives_no_access_until_the_resident_accepts_it(world: World):
    client, site = world.portal.client, f"/api/v1/sites/{world.site_id}"
    invited = await world.invite(world.anna, "rob")
    # Anna's grant alone lets Bert's resident see nothing of her home.
    assert (await client.get(site, headers=world.rob.headers)).status_code == 404
    assert invited.status_code == 202, invited.text
    [invitation] = await world.invitations(world.rob)
    assert (invitation["site_id"], invitation["site_label"], invitation["invited_by"]) == (
        world.site_id,
        "Grachtenhuis",
        "anna",
    )
    # Nobody else answers Rob's invitation, nor sees it.
    assert await world.invitations(world.rita) == []
    for person in (world.rita, world.bert, world.anna):
        refused = await world.answer(person, invitation["invitation_id"], "accept")
        assert refused.status_code == 404, person.username
    accepted = await world.answer(world.rob, invitation["invitation_id"], "accept")
    assert accepted.status_code == 200, accepted.text
    seen = await client.get(site, headers=world.rob.headers)
    assert (seen.status_code, seen.json()["access"]) == (200, "resident")
    assert await world.invitations(world.rob) == []
    listed = await client.get(f"{site}/residents", headers=world.anna.headers)
    assert [(g["username"], g["status"]) for g in listed.json()] == [("rob", "accepted")]

    # Rita declines hers: she gets no access, and Anna's list cannot tell her from someone who never answered.
    await world.invite(world.anna, "rita")
    [for_rita] = await world.invitations(world.rita)
    declined = await world.answer(world.rita, for_rita["invitation_id"], "decline")
    assert declined.status_code == 204
    assert (await client.get(site, headers=world.rita.headers)).status_code == 404
    again = await world.answer(world.rita, for_rita["invitation_id"], "accept")
    assert again.status_code == 404
    await world.invite(world.anna, "nobody-lives-here")
    listed = await client.get(f"{site}/residents", headers=world.anna.headers)
    statuses = {g["username"]: g["status"] for g in listed.json()}
    assert statuses == {"rob": "accepted", "rita": "invited", "nobody-lives-here": "invited"}


async def test_an_invitation_answers_the_same_whether_or_not_the_username_exists(world: World):
    answers = {}
    for username in ("rob", "nobody-lives-here", "bert", "olga"):
        response = await world.invite(world.anna, username)
        body = json.dumps(response.json()).replace(username, "USERNAME")
        answers[username] = (response.status_code, response.headers["content-type"], body)
    assert len(set(answers.values())) == 1, answers
    assert answers["rob"][0] == 202
    # Asking again answers the same too (no "already invited" for existing accounts only).
    assert (await world.invite(world.anna, "rob")).status_code == 202
    assert (await world.invite(world.anna, "nobody-lives-here")).status_code == 202

    # Nor does the time it takes tell them apart: interleaved, the medians are within a few milliseconds
    # (a password hash, the usual giveaway, would take tens of them).
    timings: dict[str, list[float]] = {"rob": [], "nobody-lives-here": []}
    for _ in range(7):
        for username, spent in timings.items():
            started = time.perf_counter()
            await world.invite(world.anna, username)
            spent.append(time.perf_counter() - started)
    difference = abs(statistics.median(timings["rob"]) - statistics.median(timings["nobody-lives-here"]))
    assert difference < 0.05, timings


async def test_an_owner_files_only_for_residents_who_accepted_a_grant_to_one_of_their_homes(world: World):
    client = world.portal.client
    await world.invite(world.anna, "rob")
    stranger = await world.file_access(world.anna, "nobody-lives-here")
    refused = await world.file_access(world.anna, "rob")
    assert refused.status_code == 403, refused.text
    assert refused.json()["detail"] == stranger.json()["detail"].replace("nobody-lives-here", "rob")
    [invitation] = await world.invitations(world.rob)
    assert (await world.answer(world.rob, invitation["invitation_id"], "accept")).status_code == 200
    assert (await world.file_access(world.anna, "rob")).status_code == 201
    # Once the grant ends, Rob is no longer a resident of Anna's homes.
    [grant] = (
        await client.get(f"/api/v1/sites/{world.site_id}/residents", headers=world.anna.headers)
    ).json()
    ended = await client.delete(
        f"/api/v1/sites/{world.site_id}/residents/{grant['grant_id']}", headers=world.anna.headers
    )
    assert ended.status_code == 204
    assert (await world.file_access(world.anna, "rob")).status_code == 403


def tables_of(content: bytes) -> dict[str, list[dict[str, Any]]]:
    """Return every table of an access ZIP by name."""
    tables: dict[str, list[dict[str, Any]]] = {}
    with zipfile.ZipFile(io.BytesIO(content)) as package:
        for name in package.namelist():
            if name.endswith(".json") and name not in ("manifest.json", "recipients.json"):
                tables.update(json.loads(package.read(name))["tables"])
    return tables


async def test_a_residents_access_zip_holds_nothing_from_outside_their_grant_window(world: World):
    portal, client = world.portal, world.portal.client
    site = f"/api/v1/sites/{world.site_id}"
    portal.sql(
        "INSERT INTO gateways (gateway_serial, vendor, site_id, registered_at, firmware_version, "
        "last_seen_at, last_seen_ip) VALUES (%s, 'maxem', %s, now() - interval '10 days', '2.1', "
        "now() - interval '1 hour', '198.51.100.7')",
        SERIAL,
        world.site_id,
    )
    [(grid,)] = portal.sql(
        "INSERT INTO devices (gateway_serial, device_key, device_kind, first_seen_at) "
        "VALUES (%s, 'grid', 'grid', now() - interval '10 days') RETURNING device_id",
        SERIAL,
    )

    def readings(value: float, since: str, until: str, step: str) -> None:
        portal.sql(
            "INSERT INTO energy_readings (measured_at, device_id, site_id, value, metric) "
            "SELECT t, %s, %s, %s, 'import_energy_kwh' "
            "FROM generate_series(now() + %s::interval, now() + %s::interval, %s::interval) t",
            grid,
            world.site_id,
            value,
            since,
            until,
            step,
        )

    readings(1.0, "-2 days", "-1 minute", "1 hour")  # before Rita could read the home
    await world.invite(world.anna, "rita")
    [invitation] = await world.invitations(world.rita)
    assert (await world.answer(world.rita, invitation["invitation_id"], "accept")).status_code == 200
    # While she can: three readings, a connectivity event and a setting.
    readings(IN_WINDOW, "0", "2 milliseconds", "1 millisecond")
    portal.sql(
        "INSERT INTO gateway_connectivity_events (occurred_at, gateway_serial, event, detail) "
        "VALUES (now(), %s, 'online', 'while Rita lived there')",
        SERIAL,
    )
    setting = {"kind": "schedule", "name": "while-rita", "definition": {}}
    assert (await client.put(f"{site}/settings", headers=world.anna.headers, json=setting)).status_code == 200
    filed = await world.file_access(world.anna, "rita")
    assert filed.status_code == 201, filed.text
    [grant] = (await client.get(f"{site}/residents", headers=world.anna.headers)).json()
    assert (
        await client.delete(f"{site}/residents/{grant['grant_id']}", headers=world.anna.headers)
    ).status_code == 204

    # After the grant ended: new readings, a new device, a new address of the gateway, a new setting, events.
    readings(2.0, "1 minute", "1 hour", "10 minutes")
    portal.sql(
        "INSERT INTO devices (gateway_serial, device_key, device_kind, first_seen_at) "
        "VALUES (%s, 'ev-after-rita', 'ev', now() + interval '1 minute')",
        SERIAL,
    )
    portal.sql(
        "UPDATE gateways SET last_seen_at = now() + interval '1 hour', last_seen_ip = %s, "
        "firmware_version = '3.0'",
        LATE_IP,
    )
    portal.sql(
        "INSERT INTO gateway_connectivity_events (occurred_at, gateway_serial, event, detail) "
        "VALUES (now() + interval '1 minute', %s, 'online', 'after Rita left')",
        SERIAL,
    )
    late = {"kind": "schedule", "name": "after-rita", "definition": {}}
    assert (await client.put(f"{site}/settings", headers=world.anna.headers, json=late)).status_code == 200

    request_id = filed.json()["request_id"]
    done = await client.post(
        f"/api/v1/privacy/requests/{request_id}/status",
        headers=world.olga.headers,
        json={"status": "completed"},
    )
    assert done.status_code == 200, done.text
    download = await client.get(f"/api/v1/privacy/requests/{request_id}/download", headers=world.rita.headers)
    assert download.status_code == 200, download.text
    tables = tables_of(download.content)
    assert [r["value"] for r in tables["energy_readings"]] == [IN_WINDOW] * 3
    assert [e["detail"] for e in tables["gateway_connectivity_events"]] == ["while Rita lived there"]
    assert [s["name"] for s in tables["system_settings"]] == ["while-rita"]
    assert [d["device_key"] for d in tables["devices"]] == ["grid"]
    [gateway] = tables["gateways"]
    assert gateway["gateway_serial"] == SERIAL
    text = json.dumps(tables)
    for after in (LATE_IP, "3.0", "ev-after-rita", "after-rita", "after Rita left"):
        assert after not in text, after


async def test_a_resident_accepts_and_declines_on_the_invitations_page(world: World):
    client = world.portal.client
    await world.invite(world.anna, "rob")
    await world.invite(world.bert, "rob", site_id=world.bert_site)
    listed = await client.get("/invitations", headers=world.rob.headers)
    assert listed.status_code == 200
    ids = [int(i) for i in re.findall(r'data-invitation="(\d+)"', listed.text)]
    assert len(ids) == 2
    assert "Grachtenhuis" in listed.text
    assert "Flat van Bert" in listed.text
    anna_invitation, bert_invitation = ids
    accepted = await client.post(f"/invitations/{bert_invitation}/accept", headers=world.rob.headers)
    assert (accepted.status_code, accepted.headers["location"]) == (303, f"/sites/{world.bert_site}")
    declined = await client.post(f"/invitations/{anna_invitation}/decline", headers=world.rob.headers)
    assert (declined.status_code, declined.headers["location"]) == (303, "/invitations?declined=true")
    after = await client.get(declined.headers["location"], headers=world.rob.headers)
    assert "data-invitation" not in after.text
    assert "Declined" in after.text
    home = await client.get(f"/sites/{world.bert_site}", headers=world.rob.headers)
    assert home.status_code == 200
    assert (await client.get(f"/sites/{world.site_id}", headers=world.rob.headers)).status_code == 404
    # Someone else's invitation, or one answered already, is no page of theirs.
    again = await client.post(f"/invitations/{anna_invitation}/accept", headers=world.rob.headers)
    assert again.status_code == 404
    stranger = await client.get("/invitations", headers=world.anna.headers)
    assert stranger.status_code == 403


async def test_an_invitation_not_accepted_puts_nothing_of_the_home_in_the_residents_zip(world: World):
    client = world.portal.client
    world.portal.sql(
        "INSERT INTO gateways (gateway_serial, vendor, site_id, last_seen_at, last_seen_ip) "
        "VALUES (%s, 'maxem', %s, now(), %s)",
        SERIAL,
        world.site_id,
        LATE_IP,
    )
    await world.invite(world.anna, "rob")  # never answered
    await world.invite(world.anna, "rita")
    [for_rita] = await world.invitations(world.rita)
    assert (await world.answer(world.rita, for_rita["invitation_id"], "decline")).status_code == 204
    for resident in (world.rob, world.rita):
        filed = await client.post(
            "/api/v1/privacy/requests",
            headers=world.olga.headers,
            json={"kind": "access", "subject_username": resident.username},
        )
        assert filed.status_code == 201, filed.text
        request_id = filed.json()["request_id"]
        done = await client.post(
            f"/api/v1/privacy/requests/{request_id}/status",
            headers=world.olga.headers,
            json={"status": "completed"},
        )
        assert done.status_code == 200, done.text
        download = await client.get(
            f"/api/v1/privacy/requests/{request_id}/download", headers=resident.headers
        )
        tables = tables_of(download.content)
        for table in ("sites", "gateways", "devices", "energy_readings", "system_settings"):
            assert tables[table] == [], (resident.username, table)
        text = json.dumps(tables)
        for anna_data in ("Grachtenhuis", SERIAL, LATE_IP):
            assert anna_data not in text, (resident.username, anna_data)
        # Their own invitation is theirs to see.
        assert [g["site_id"] for g in tables["resident_grants"]] == [world.site_id]
