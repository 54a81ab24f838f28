"""A home changes hands: each person sees only the data of the period they were entitled to, and the old
owner's rights reach their own period and nothing of the new owner's.

The world: Anna owns Huize Vijf, lets her resident Rita read it and assigns her installer Ivo; Anna's period
has two days of readings (grid meter and an EV charger) and rollups, an address, a setting, and reads by
Rita and Ivo in its access log. Then `thuis users own` (ops.accounts.set_site_owner) makes Bert the owner,
and Bert's period gets two days of grid readings (after the transfer, so stamped ahead of the clock) and a
new last-seen address of the gateway. Every expectation is derived from the seeded times and counts.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import zipfile
import zoneinfo
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from ops.accounts import set_site_owner
from ops.localstack import PostgresCluster
from rollup.worker import drain_pending
from tests.fixtures.database import Database
from tests.fixtures.portal import Person, Portal, built_once, in_days, portal_on_copy, running_portal
from thuis.db import connection

ZONE = zoneinfo.ZoneInfo("Europe/Amsterdam")
SERIAL = "MAXEM-VIJF01"
ANNA_IP, BERT_IP = "198.51.100.7", "203.0.113.9"
ANNA_STREET = "Prinsengracht"
QUARTER = dt.timedelta(minutes=15)
PEOPLE = {
    "anna": ("owner", {"email": "anna@example.org", "holder_name": "Anna de Vries"}),
    "bert": ("owner", {"email": "bert@example.org", "holder_name": "Bert Bakker"}),
    "rita": ("resident", {"resident_of": "anna"}),
    "ivo": ("installer", {"company": "Warmte BV"}),
    "kees": ("installer", {"company": "Koude BV"}),
    "olga": ("privacy_officer", {}),
    "otto": ("privacy_officer", {}),
}


@dataclass(frozen=True)
class Handover:
    """The world after the transfer, built once and copied for each test."""

    database: Database
    people: dict[str, Person]
    site_id: int
    grid: int
    ev: int
    transfer_at: dt.datetime  # the moment Bert's period began (read back from the database's clock)
    anna_readings: int
    bert_readings: int


@dataclass
class World:
    portal: Portal
    handover: Handover

    def person(self, name: str) -> Person:
        return self.portal.people[name]

    async def get(self, name: str, url: str, **params: Any) -> httpx.Response:
        return await self.portal.client.get(url, headers=self.person(name).headers, params=params)


async def let_resident_read(portal: Portal, owner: Person, resident: Person, site_id: int) -> None:
    """The owner invites the resident to read the home; the resident accepts the invitation."""
    invited = await portal.client.post(
        f"/api/v1/sites/{site_id}/residents", headers=owner.headers, json={"username": resident.username}
    )
    assert invited.status_code == 202, invited.text
    invitations = await portal.client.get("/api/v1/invitations", headers=resident.headers)
    [invitation] = [i for i in invitations.json() if i["site_id"] == site_id]
    accepted = await portal.client.post(
        f"/api/v1/invitations/{invitation['invitation_id']}/accept", headers=resident.headers
    )
    assert accepted.status_code == 200, accepted.text


def seed_readings(portal: Portal, *, device: int, site_id: int, metric: str, since: str, until: str) -> int:
    """Store a meter's readings every 15 minutes from now + `since` until now + `until`, rising 1 an hour."""
    rows = portal.sql(
        "INSERT INTO energy_readings (measured_at, device_id, site_id, value, metric) "
        "SELECT t, %s, %s, extract(epoch FROM t) / 3600, %s "
        "FROM generate_series(now() + %s::interval, now() + %s::interval - interval '1 second', "
        "interval '15 minutes') t RETURNING measured_at",
        device,
        site_id,
        metric,
        since,
        until,
    )
    portal.sql(
        "INSERT INTO energy_rollup_pending (device_id, hour) "
        "SELECT DISTINCT device_id, date_trunc('hour', measured_at) FROM energy_readings "
        "WHERE device_id = %s ON CONFLICT DO NOTHING",
        device,
    )
    return len(rows)


async def build_handover(database: Database) -> Handover:
    async with running_portal(database) as portal:
        for username, (role, extra) in PEOPLE.items():
            portal.add_person(username, role, **extra)
        for person in portal.people.values():
            assert (await portal.sign_in(person)).status_code == 200, person.username
        anna, rita = portal.people["anna"], portal.people["rita"]
        site_id = portal.add_site("Huize Vijf", owner="anna")
        portal.sql(
            "INSERT INTO gateways (gateway_serial, vendor, site_id, registered_at, last_seen_at, "
            "last_seen_ip) VALUES (%s, 'maxem', %s, now() - interval '10 days', now() - interval '1 minute', "
            "%s)",
            SERIAL,
            site_id,
            ANNA_IP,
        )
        grid, ev = (
            portal.sql(
                "INSERT INTO devices (gateway_serial, device_key, device_kind, first_seen_at) "
                "VALUES (%s, %s, %s, now() - interval '3 days') RETURNING device_id",
                SERIAL,
                key,
                kind,
            )[0][0]
            for key, kind in (("grid", "grid"), ("ev-charger", "ev"))
        )
        anna_readings = seed_readings(
            portal, device=grid, site_id=site_id, metric="import_energy_kwh", since="-2 days", until="0"
        )
        seed_readings(
            portal, device=ev, site_id=site_id, metric="energy_kwh", since="-2 days", until="-1 day"
        )
        site = f"/api/v1/sites/{site_id}"
        address = {"street": ANNA_STREET, "house_number": "263", "postcode": "1016 GV", "city": "Amsterdam"}
        assert (
            await portal.client.put(f"{site}/address", headers=anna.headers, json=address)
        ).status_code == 200
        setting = {"kind": "schedule", "name": "anna-night", "definition": {"from": "23:00"}}
        assert (
            await portal.client.put(f"{site}/settings", headers=anna.headers, json=setting)
        ).status_code == 200
        await let_resident_read(portal, anna, rita, site_id)
        assigned = await portal.client.post(
            f"{site}/assignments",
            headers=anna.headers,
            json={"installer_username": "ivo", "expires_at": in_days(30)},
        )
        assert assigned.status_code == 201, assigned.text
        for reader in ("rita", "ivo"):  # reads of Anna's data, in Anna's access log
            response = await portal.client.get(site, headers=portal.people[reader].headers)
            assert response.status_code == 200, response.text

        # `thuis users own SITE bert`: the home changes hands. Every reading of Anna's is older than this
        # moment, and Bert's period begins no earlier.
        transfer_at = portal.sql("SELECT now()")[0][0]
        await hand_over(database, site_id, to="bert")
        bert_readings = seed_readings(
            portal,
            device=grid,
            site_id=site_id,
            metric="import_energy_kwh",
            since="15 minutes",
            until="2 days",
        )
        portal.sql("UPDATE gateways SET last_seen_at = now() + interval '2 days', last_seen_ip = %s", BERT_IP)
        async with connection(database.rollup_url, application_name="test") as conn:
            await drain_pending(conn)
        return Handover(
            database, dict(portal.people), site_id, grid, ev, transfer_at, anna_readings, bert_readings
        )


async def hand_over(database: Database, site_id: int, *, to: str) -> None:
    """Do what `thuis users own SITE_ID OWNER` does."""
    async with connection(database.owner_url, application_name="test") as conn:
        await set_site_owner(conn, site_id=site_id, owner=to)


@pytest.fixture(scope="module")
def handover(pg_cluster: PostgresCluster, template_database: str, workdir: Path) -> Iterator[Handover]:
    with built_once(pg_cluster, template_database, workdir, build_handover) as built:
        yield built


@pytest.fixture
async def world(pg_cluster: PostgresCluster, handover: Handover, workdir: Path) -> AsyncIterator[World]:
    async with portal_on_copy(pg_cluster, handover.database, handover.people, workdir) as portal:
        yield World(portal, replace(handover, database=portal.database))


def window(world: World) -> dict[str, str]:
    """Three days either side of the transfer: every reading of both periods."""
    at = world.handover.transfer_at
    return {"start": (at - dt.timedelta(days=3)).isoformat(), "end": (at + dt.timedelta(days=3)).isoformat()}


async def all_readings(world: World, name: str) -> list[dt.datetime]:
    url = f"/api/v1/sites/{world.handover.site_id}/devices/{world.handover.grid}/readings"
    response = await world.get(name, url, limit=1000, **window(world))
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["next_cursor"] is None
    return [dt.datetime.fromisoformat(item["time"]) for item in page["items"]]


def local_midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=ZONE)


async def test_the_old_owners_resident_installer_and_the_old_owner_see_nothing_of_the_home(world: World):
    site = f"/api/v1/sites/{world.handover.site_id}"
    today = dt.datetime.now(ZONE).date()
    days = {"start": str(today - dt.timedelta(days=3)), "end": str(today + dt.timedelta(days=3))}
    hours = window(world) | {"end": (world.handover.transfer_at + dt.timedelta(days=2)).isoformat()}
    for name in ("anna", "rita", "ivo"):
        listed = await world.get(name, "/api/v1/sites")
        assert world.handover.site_id not in [s["site_id"] for s in listed.json()], name
        for url, params in (
            (site, {}),
            (f"{site}/owner", {}),
            (f"{site}/address", {}),
            (f"{site}/gateways", {}),
            (f"{site}/devices", {}),
            (f"{site}/devices/{world.handover.grid}/readings", window(world)),
            (f"{site}/energy/hourly", hours),
            (f"{site}/energy/daily", days),
            (f"{site}/energy/summary", days),
        ):
            response = await world.get(name, url, **params)
            assert response.status_code == 404, (name, url, response.text)
            assert "Bert" not in response.text
            assert BERT_IP not in response.text
    page = await world.get("rita", f"/sites/{world.handover.site_id}")
    assert page.status_code == 404


async def test_the_new_owner_sees_only_what_belongs_to_their_own_period(world: World):
    handover = world.handover
    site = f"/api/v1/sites/{handover.site_id}"
    times = await all_readings(world, "bert")
    assert len(times) == handover.bert_readings
    assert min(times) >= handover.transfer_at
    hourly = await world.get(
        "bert",
        f"{site}/energy/hourly",
        **window(world) | {"end": (handover.transfer_at + dt.timedelta(days=2)).isoformat()},
    )
    assert hourly.status_code == 200
    assert hourly.json(), "Bert's own hours are there"
    assert all(dt.datetime.fromisoformat(p["time"]) >= handover.transfer_at for p in hourly.json())
    today = dt.datetime.now(ZONE).date()
    days = {"start": str(today - dt.timedelta(days=3)), "end": str(today + dt.timedelta(days=3))}
    for kind in ("daily", "summary"):
        response = await world.get("bert", f"{site}/energy/{kind}", **days)
        assert response.status_code == 200
        starts = [dt.date.fromisoformat(p["time" if kind == "daily" else "period"]) for p in response.json()]
        assert starts, f"Bert's own days are in the {kind}"
        # A day is Bert's only when all of it lies in his period.
        assert all(local_midnight(day) >= handover.transfer_at for day in starts), kind
    devices = await world.get("bert", f"{site}/devices")
    assert [d["device_key"] for d in devices.json()["items"]] == ["grid"]  # Anna's EV charger left with her
    address = await world.get("bert", f"{site}/address")
    assert address.status_code == 200
    assert ANNA_STREET not in address.text
    settings = await world.get("bert", f"{site}/settings")
    assert settings.json() == []
    log = await world.get("bert", f"{site}/access-log")
    assert log.json()["items"] == []  # Rita's and Ivo's reads were of Anna's data
    residents = await world.get("bert", f"{site}/residents", include_ended="true")
    assignments = await world.get("bert", f"{site}/assignments", include_ended="true")
    assert (residents.json(), assignments.json()) == ([], [])
    gateways = await world.get("bert", f"{site}/gateways")
    assert [g["last_seen_ip"] for g in gateways.json()] == [BERT_IP]
    # The page draws only Bert's buckets, and not Anna's EV charger.
    page = await world.get("bert", f"/sites/{handover.site_id}")
    assert page.status_code == 200
    assert "ev-charger" not in page.text
    buckets = [dt.datetime.fromisoformat(b) for b in re.findall(r'data-bucket="([^"]+)"', page.text)]
    assert all(bucket >= handover.transfer_at for bucket in buckets)


async def test_the_new_owners_installer_gets_the_new_owner_and_only_the_new_owners_period(world: World):
    site = f"/api/v1/sites/{world.handover.site_id}"
    bert = world.person("bert")
    assigned = await world.portal.client.post(
        f"{site}/assignments",
        headers=bert.headers,
        json={"installer_username": "kees", "expires_at": in_days(5)},
    )
    assert assigned.status_code == 201, assigned.text
    # A second, overlapping assignment of the same installer shows nothing twice.
    again = await world.portal.client.post(
        f"{site}/assignments",
        headers=bert.headers,
        json={"installer_username": "kees", "expires_at": in_days(9)},
    )
    assert again.status_code == 201, again.text
    contact = await world.get("kees", f"{site}/owner")
    assert (contact.status_code, contact.json()["holder_name"]) == (200, "Bert Bakker")
    times = await all_readings(world, "kees")
    # Bert's readings, all of them (his period is what he lets his installer see), each once; none of Anna's.
    assert len(times) == len(set(times)) == world.handover.bert_readings
    assert min(times) >= world.handover.transfer_at


async def test_the_old_owners_erasure_after_the_transfer_removes_their_period_and_none_of_the_new(
    world: World,
):
    handover, portal = world.handover, world.portal
    site_id = handover.site_id
    before = portal.sql(
        "SELECT count(*) FILTER (WHERE measured_at < %s), count(*) FILTER (WHERE measured_at >= %s) "
        "FROM energy_readings WHERE site_id = %s AND device_id = %s",
        handover.transfer_at,
        handover.transfer_at,
        site_id,
        handover.grid,
    )
    assert before == [(handover.anna_readings, handover.bert_readings)]
    bert_hours = portal.sql(
        "SELECT count(*) FROM energy_hourly WHERE site_id = %s AND hour >= %s", site_id, handover.transfer_at
    )[0][0]
    olga = world.person("olga")
    filed = await portal.client.post(
        "/api/v1/privacy/requests", headers=olga.headers, json={"kind": "erasure", "subject_username": "anna"}
    )
    assert filed.status_code == 201, filed.text
    request_url = f"/api/v1/privacy/requests/{filed.json()['request_id']}"
    proposed = await portal.client.post(f"{request_url}/proposal", headers=olga.headers, json={})
    assert proposed.status_code == 200, proposed.text
    done = await portal.client.post(
        f"{request_url}/approval", headers=world.person("otto").headers, json={"decision": "approve"}
    )
    assert done.status_code == 200, done.text
    assert portal.sql(
        "SELECT count(*) FILTER (WHERE measured_at < %s), count(*) FILTER (WHERE measured_at >= %s) "
        "FROM energy_readings WHERE site_id = %s",
        handover.transfer_at,
        handover.transfer_at,
        site_id,
    ) == [(0, handover.bert_readings)]
    assert portal.sql(
        "SELECT count(*) FROM energy_hourly WHERE site_id = %s AND hour + interval '1 hour' <= %s",
        site_id,
        handover.transfer_at,
    ) == [(0,)]
    assert portal.sql(
        "SELECT count(*) FROM energy_hourly WHERE site_id = %s AND hour >= %s", site_id, handover.transfer_at
    ) == [(bert_hours,)]
    assert portal.sql("SELECT count(*) FROM system_settings WHERE site_id = %s", site_id) == [(0,)]
    # Bert's home, and what he sees of it, are untouched.
    times = await all_readings(world, "bert")
    assert len(times) == handover.bert_readings


def unzip(content: bytes) -> dict[str, Any]:
    with zipfile.ZipFile(io.BytesIO(content)) as package:
        return {name: json.loads(package.read(name)) for name in package.namelist() if name.endswith(".json")}


async def own_access_zip(world: World, name: str) -> dict[str, Any]:
    person = world.person(name)
    filed = await world.portal.client.post(
        "/api/v1/privacy/requests", headers=person.headers, json={"kind": "access"}
    )
    assert filed.status_code == 201, filed.text
    response = await world.portal.client.get(filed.json()["download_url"], headers=person.headers)
    assert response.status_code == 200, response.text
    return unzip(response.content)


async def test_each_owners_access_zip_holds_their_own_period_and_nothing_of_the_other(world: World):
    handover = world.handover

    def tables(files: dict[str, Any], category: str) -> dict[str, list[dict[str, Any]]]:
        result: dict[str, list[dict[str, Any]]] = files[f"{category}.json"]["tables"]
        return result

    anna = await own_access_zip(world, "anna")
    readings = tables(anna, "energy_readings")["energy_readings"]
    assert len([r for r in readings if r["device_id"] == handover.grid]) == handover.anna_readings
    assert all(dt.datetime.fromisoformat(r["measured_at"]) < handover.transfer_at for r in readings)
    [gateway] = tables(anna, "gateway_identity")["gateways"]
    assert BERT_IP not in json.dumps(gateway)  # seen at Bert's, after Anna's period

    bert = await own_access_zip(world, "bert")
    readings = tables(bert, "energy_readings")["energy_readings"]
    assert len(readings) == handover.bert_readings
    assert all(dt.datetime.fromisoformat(r["measured_at"]) >= handover.transfer_at for r in readings)
    text = json.dumps(bert)
    for anna_data in (ANNA_STREET, ANNA_IP, "anna-night", "ev-charger", '"rita"', '"ivo"'):
        assert anna_data not in text, anna_data
