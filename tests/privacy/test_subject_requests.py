"""Data-subject requests: filing, due dates, trails, what each kind does, the access ZIP, erasure, queue."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.schemas.privacy import _iban_problem
from privacy.keys.crypto import open_json, seal_json
from privacy.keys.fields import (
    CONTRACTS_HOLDER,
    MARKETING_CONTACTS_CONTACT,
    WEBSHOP_ORDERS_CUSTOMER,
    SealedColumn,
)
from privacy.keys.subject_keys import create_key, load_key
from privacy.subjects.access_export_queries import TABLES
from tests.fixtures.database import Database
from tests.fixtures.portal import Person, Portal, in_days, running_portal
from tests.support import as_owner
from thuis.catalogue import load_catalogue

EMAIL = "anna@example.org"
# Naive bounds: hypothesis adds no zone; the test gives every example UTC.
RECEIVED_AT = st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2090, 1, 1))  # noqa: DTZ001
WORDING = "Yes, Thuis may send me news about energy products by email. I can withdraw this at any time."


@dataclass
class World:
    portal: Portal
    anna: Person  # owner of Grachtenhuis
    rita: Person  # resident of Grachtenhuis
    bert: Person  # another owner
    rob: Person  # Bert's resident
    olga: Person  # the privacy officer
    site_id: int

    def user_id(self, person: Person) -> int:
        return person.account.user_id


@pytest.fixture
async def world(database: Database) -> AsyncIterator[World]:
    async with running_portal(database) as portal:
        anna = portal.add_person("anna", "owner", email=EMAIL, holder_name="Anna de Vries")
        rita = portal.add_person("rita", "resident", resident_of="anna")
        bert = portal.add_person("bert", "owner")
        rob = portal.add_person("rob", "resident", resident_of="bert")
        olga = portal.add_person("olga", "privacy_officer")
        site_id = portal.add_site("Grachtenhuis", owner="anna")
        bert_site = portal.add_site("Bert's flat", owner="bert")
        # Each resident accepted their owner's grant.
        portal.sql(
            "INSERT INTO resident_grants (site_id, resident_user_id, granted_by, invited_username, "
            "accepted_at) "
            "VALUES (%s, %s, %s, 'rita', now()), (%s, %s, %s, 'rob', now())",
            site_id,
            rita.account.user_id,
            anna.account.user_id,
            bert_site,
            rob.account.user_id,
            bert.account.user_id,
        )
        for person in (anna, rita, bert, rob, olga):
            assert (await portal.sign_in(person)).status_code == 200
        yield World(portal, anna, rita, bert, rob, olga, site_id)


async def file(world: World, person: Person, body: dict[str, Any], status: int = 201) -> dict[str, Any]:
    response = await world.portal.client.post("/api/v1/privacy/requests", json=body, headers=person.headers)
    assert response.status_code == status, response.text
    result: dict[str, Any] = response.json()
    return result


async def set_status(
    world: World, request_id: int, status: str, note: str | None = None, expect: int = 200
) -> dict[str, Any]:
    response = await world.portal.client.post(
        f"/api/v1/privacy/requests/{request_id}/status",
        json={"status": status, "note": note},
        headers=world.olga.headers,
    )
    assert response.status_code == expect, response.text
    result: dict[str, Any] = response.json()
    return result


def next_row_key(conn: psycopg.Connection, column: SealedColumn) -> int:
    """Reserve the key of a row to insert by hand, as privacy.keys.subject_keys.reserve_row_key does."""
    row = conn.execute(
        "SELECT nextval(pg_get_serial_sequence(%s, %s))", (column.table, column.row_key)
    ).fetchone()
    assert row is not None
    return int(row[0])


def contract_holder(database: Database, user_id: int) -> dict[str, Any]:
    with psycopg.connect(database.owner_url) as conn:
        row = conn.execute(
            "SELECT contract_id, key_id, holder_ciphertext FROM contracts WHERE holder_user_id = %s",
            (user_id,),
        ).fetchone()
        assert row is not None
        key = as_owner(database.owner_url, load_key, database.keyring, row[1])
        return open_json(key, row[2], context=CONTRACTS_HOLDER.at(row[0], row[1]))


async def test_a_request_is_due_28_days_after_receipt_and_its_trail_records_every_change(world: World):
    portal = world.portal
    filed = await file(
        world,
        world.anna,
        {
            "kind": "rectification",
            "details": {"postcode": "1234ab", "bank_account": "NL91 ABNA 0417 1643 00"},
        },
    )
    received, due = (
        dt.datetime.fromisoformat(filed["received_at"]),
        dt.datetime.fromisoformat(filed["due_at"]),
    )
    assert due - received == dt.timedelta(days=28)
    assert (filed["status"], filed["days_left"], filed["overdue"]) == ("received", 28, False)
    assert filed["details"] == {"fields": ["bank_account", "postcode"]}
    assert filed["personal_details"] == {"postcode": "1234 AB", "bank_account": "NL91 ABNA 0417 1643 00"}
    # The new values are stored sealed with Anna's key, never in the clear.
    stored = portal.sql("SELECT details::text, details_ciphertext IS NOT NULL FROM subject_requests")
    assert stored == [('{"fields": ["bank_account", "postcode"]}', True)]

    await set_status(world, filed["request_id"], "in_progress", "asked billing to confirm")
    done = await set_status(world, filed["request_id"], "completed")
    assert done["outcome"] == "rectified in 1 billing record: bank account, postcode"
    assert [(e["status"], e["role"], e["actor_user_id"]) for e in done["trail"]] == [
        ("received", "owner", world.user_id(world.anna)),
        ("in_progress", "privacy_officer", world.user_id(world.olga)),
        ("completed", "privacy_officer", world.user_id(world.olga)),
    ]
    assert done["trail"][1]["note"] == "asked billing to confirm"
    times = [dt.datetime.fromisoformat(e["at"]) for e in done["trail"]]
    assert times == sorted(times)
    holder = contract_holder(portal.database, world.user_id(world.anna))
    assert (holder["holder_name"], holder["postcode"], holder["bank_account"]) == (
        "Anna de Vries",
        "1234 AB",
        "NL91 ABNA 0417 1643 00",
    )
    again = await set_status(world, filed["request_id"], "refused", "too late", expect=409)
    assert "was closed (completed)" in again["detail"]
    # Neither a caller nor the database gives a request longer than four weeks.
    portal.sql("UPDATE subject_requests SET due_at = due_at + interval '1 year'")
    assert portal.sql("SELECT due_at - received_at FROM subject_requests") == [(dt.timedelta(days=28),)]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(received_at=RECEIVED_AT)
def test_the_database_sets_every_due_date_to_28_days_after_receipt(
    database: Database, received_at: dt.datetime
):
    received_at = received_at.replace(tzinfo=dt.UTC)
    with psycopg.connect(database.owner_url) as conn:
        row = conn.execute(
            "INSERT INTO subject_requests (kind, received_at, due_at) VALUES ('access', %s, %s) "
            "RETURNING due_at",
            (received_at, received_at + dt.timedelta(days=365)),
        ).fetchone()
        conn.rollback()
    assert row is not None
    assert row[0] == received_at + dt.timedelta(days=28)


async def test_an_owner_files_for_a_resident_of_their_home_and_for_no_one_else(world: World):
    portal = world.portal
    for_rita = await file(
        world, world.anna, {"kind": "restriction", "subject_username": "rita", "details": {"action": "start"}}
    )
    # A resident's request waits for the privacy officer, who checks it with the resident.
    assert (for_rita["subject_username"], for_rita["filed_by_username"], for_rita["status"]) == (
        "rita",
        "anna",
        "received",
    )
    assert portal.sql("SELECT restricted_since FROM users WHERE username = 'rita'") == [(None,)]
    await set_status(world, for_rita["request_id"], "completed", "confirmed with Rita by phone")
    assert portal.sql("SELECT restricted_since IS NOT NULL FROM users WHERE username = 'rita'") == [(True,)]

    # Not Bert's resident, nor an account that does not exist: the same refusal, which tells nothing.
    for username in ("rob", "nobody", "bert"):
        refused = await file(world, world.anna, {"kind": "access", "subject_username": username}, status=403)
        assert refused["detail"] == (
            "an owner files for themselves or for a resident with access to one of their homes; "
            f"{username!r} is not such a resident"
        )
    by_rita = await file(world, world.rita, {"kind": "access"}, status=403)
    assert "ask the owner to file this request for you" in by_rita["detail"]
    # Rita follows her request; Bert cannot see it.
    mine = await portal.client.get("/api/v1/privacy/requests", headers=world.rita.headers)
    assert [(r["request_id"], r["status"]) for r in mine.json()] == [(for_rita["request_id"], "completed")]
    seen = await portal.client.get(
        f"/api/v1/privacy/requests/{for_rita['request_id']}", headers=world.bert.headers
    )
    assert seen.status_code == 404
    # A resident holds no contract: there is nothing of theirs for the officer to rectify.
    rectify = await file(
        world,
        world.anna,
        {"kind": "rectification", "subject_username": "rita", "details": {"city": "Delft"}},
        422,
    )
    assert "rita holds no contract" in rectify["detail"]


async def test_restriction_objection_and_consent_take_effect_at_once_with_time_and_wording(world: World):
    portal = world.portal
    before = dt.datetime.now(dt.UTC)
    restricted = await file(world, world.anna, {"kind": "restriction", "details": {"action": "start"}})
    assert restricted["status"] == "completed"
    assert restricted["outcome"].startswith("processing restricted from now on: no exports, no marketing")
    assert [e["status"] for e in restricted["trail"]] == ["received", "completed"]
    objected = await file(
        world, world.anna, {"kind": "objection", "details": {"purpose": "marketing", "action": "start"}}
    )
    assert objected["outcome"] == "objection to marketing recorded: no marketing from now on"
    since = portal.sql(
        "SELECT restricted_since, objects_to_marketing_since, objects_to_research_since FROM users "
        "WHERE username = 'anna'"
    )[0]
    assert since[0] >= before
    assert since[1] >= before
    assert since[2] is None

    for given_ in (True, False):
        consent = {"purpose": "marketing", "given": given_, "wording": WORDING}
        answered = await file(world, world.anna, {"kind": "consent", "details": consent})
        assert answered["status"] == "completed"
    records = portal.sql(
        "SELECT recorded_at, purpose, given, wording FROM consent_records ORDER BY recorded_at"
    )
    assert [(r[1], r[2], r[3]) for r in records] == [
        ("marketing", True, WORDING),
        ("marketing", False, WORDING),
    ]
    assert all(r[0] >= before for r in records)

    await file(world, world.anna, {"kind": "restriction", "details": {"action": "lift"}})
    assert portal.sql("SELECT restricted_since FROM users WHERE username = 'anna'") == [(None,)]
    bad = await file(
        world, world.anna, {"kind": "consent", "details": {"purpose": "lottery", "given": True}}, 422
    )
    assert "body field consent.details.purpose" in bad["detail"]
    assert "body field consent.details.wording: Field required" in bad["detail"]


def seed_anna(world: World) -> dict[str, Any]:
    """Give Anna a gateway with readings, a setting, an order and a marketing contact, all hers."""
    portal, database = world.portal, world.portal.database
    portal.sql(
        "INSERT INTO gateways (gateway_serial, vendor, site_id, last_seen_ip) "
        "VALUES ('MXM-ANNA', 'maxem', %s, '198.51.100.7')",
        world.site_id,
    )
    device = portal.sql(
        "INSERT INTO devices (gateway_serial, device_key, device_kind) VALUES ('MXM-ANNA', 'grid', 'grid') "
        "RETURNING device_id"
    )[0][0]
    portal.sql(
        "INSERT INTO energy_readings (measured_at, device_id, site_id, value, metric) "
        "SELECT t, %s, %s, 1000 + extract(epoch FROM t - now()) / 60, 'import_energy_kwh' "
        "FROM generate_series(now() - interval '12001 minutes', now() - interval '1 minute', "
        "interval '1 minute') t",
        device,
        world.site_id,
    )
    portal.sql(
        "INSERT INTO smart_home_readings (measured_at, device_id, site_id, value, metric) "
        "VALUES (now(), %s, %s, 21.5, 'temperature_c')",
        device,
        world.site_id,
    )
    portal.sql(
        "INSERT INTO energy_hourly "
        "VALUES (%s, 'import_energy_kwh', date_trunc('hour', now()), %s, 60, 1, 0, 2, 2, now())",
        device,
        world.site_id,
    )
    portal.sql(
        "INSERT INTO gateway_connectivity_events (occurred_at, gateway_serial, event, ip) "
        "VALUES (now(), 'MXM-ANNA', 'connected', '198.51.100.7')"
    )
    portal.sql(
        "INSERT INTO quarantine (topic, gateway_serial, payload, payload_sha256, payload_size, reason, "
        "received_at, last_received_at) VALUES ('t', 'MXM-ANNA', 'x', 'h', 1, 'not JSON', now(), now())"
    )
    portal.sql(
        "INSERT INTO system_settings (site_id, kind, name, definition) "
        "VALUES (%s, 'schedule', 'night', '{\"from\": \"23:00\"}')",
        world.site_id,
    )
    with psycopg.connect(database.owner_url) as conn:
        order = as_owner(database.owner_url, create_key, database.keyring, scope="order")
        order_id = next_row_key(conn, WEBSHOP_ORDERS_CUSTOMER)
        customer = seal_json(
            order.data_key,
            {"phone": "+31 6 1234 5678"},
            context=WEBSHOP_ORDERS_CUSTOMER.at(order_id, order.key_id),
        )
        conn.execute(
            "INSERT INTO webshop_orders (order_id, ordered_at, products, customer_user_id, key_id, "
            "customer_ciphertext) OVERRIDING SYSTEM VALUE VALUES (%s, now(), '[\"P1 dongle\"]', %s, %s, %s)",
            (order_id, world.user_id(world.anna), order.key_id, customer),
        )
        marketing = as_owner(database.owner_url, create_key, database.keyring, scope="marketing")
        contact_id = next_row_key(conn, MARKETING_CONTACTS_CONTACT)
        contact = {"email": EMAIL, "name": "Anna dV"}
        conn.execute(
            "INSERT INTO marketing_contacts (contact_id, last_activity_at, key_id, email_hash, "
            "contact_ciphertext) OVERRIDING SYSTEM VALUE VALUES (%s, now(), %s, %s, %s)",
            (
                contact_id,
                marketing.key_id,
                database.keyring.email_hash(EMAIL),
                seal_json(
                    marketing.data_key,
                    contact,
                    context=MARKETING_CONTACTS_CONTACT.at(contact_id, marketing.key_id),
                ),
            ),
        )
    return {"device_id": device, "energy_readings": 12001}


def unzip(content: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        assert archive.testzip() is None
        return {name: archive.read(name) for name in archive.namelist()}


async def test_the_access_zip_holds_every_category_of_the_catalogue_and_who_the_data_went_to(world: World):
    portal = world.portal
    seeded = seed_anna(world)
    installer = portal.add_person("ivo", "installer", company="Warmte BV")
    await portal.sign_in(installer)
    address = await portal.client.put(
        f"/api/v1/sites/{world.site_id}/address",
        json={"street": "Prinsengracht", "house_number": "263", "postcode": "1016 GV", "city": "Amsterdam"},
        headers=world.anna.headers,
    )
    assert address.status_code == 200
    assigned = await portal.client.post(
        f"/api/v1/sites/{world.site_id}/assignments",
        json={"installer_username": "ivo", "expires_at": in_days(7)},
        headers=world.anna.headers,
    )
    assert assigned.status_code == 201
    assert (
        await portal.client.get(f"/api/v1/sites/{world.site_id}/devices", headers=installer.headers)
    ).status_code == 200

    filed = await file(world, world.anna, {"kind": "access"})
    assert filed["status"] == "completed"
    assert filed["download_url"] == f"/api/v1/privacy/requests/{filed['request_id']}/download"
    response = await portal.client.get(filed["download_url"], headers=world.anna.headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    files = unzip(response.content)

    categories = [c for c in load_catalogue().categories if c.personal]
    expected = {f"{c.id}.{suffix}" for c in categories for suffix in ("json", "csv")}
    assert expected | {"README.txt", "manifest.json", "recipients.json"} == set(files)
    for category in categories:
        document = json.loads(files[f"{category.id}.json"])
        assert (document["category"], list(document["tables"])) == (category.id, list(category.tables))
        header = next(csv.reader(io.StringIO(files[f"{category.id}.csv"].decode())))
        assert header[0] == "table"

    def rows(category: str, table: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = json.loads(files[f"{category}.json"])["tables"][table]
        return result

    account = rows("user_data", "users")[0]
    assert (account["username"], account["email"], account["password"]) == ("anna", EMAIL, "set (not shown)")
    assert rows("billing_records", "contracts")[0]["holder_name"] == "Anna de Vries"
    assert rows("product_information", "sites")[0]["street"] == "Prinsengracht"
    assert len(rows("energy_readings", "energy_readings")) == seeded["energy_readings"]
    csv_rows = list(csv.DictReader(io.StringIO(files["energy_readings.csv"].decode())))
    assert len(csv_rows) == seeded["energy_readings"]
    assert {r["table"] for r in csv_rows} == {"energy_readings"}
    assert rows("smart_home_readings", "smart_home_readings")[0]["value"] == 21.5
    assert len(rows("energy_rollups", "energy_hourly")) == 1
    assert rows("gateway_identity", "gateways")[0]["last_seen_ip"] == "198.51.100.7"
    assert rows("gateway_connectivity", "gateway_connectivity_events")[0]["event"] == "connected"
    assert rows("quarantine", "quarantine")[0]["reason"] == "not JSON"
    assert rows("system_settings", "system_settings")[0]["definition"] == {"from": "23:00"}
    assert rows("webshop_orders", "webshop_orders")[0]["customer"] == {"phone": "+31 6 1234 5678"}
    assert rows("marketing_contacts", "marketing_contacts")[0]["name"] == "Anna dV"
    assert [r["outcome"] for r in rows("login_data", "login_events")] == ["success"]
    assert len(rows("sessions", "sessions")) == 1
    assert "token_sha256" not in rows("sessions", "sessions")[0]
    assert [r["request_id"] for r in rows("data_subject_requests", "subject_requests")] == [
        filed["request_id"]
    ]
    assert rows("research_releases", "research_releases") == []
    assert rows("privacy_loss_records", "research_release_households") == []
    assert "only with your research consent" in json.loads(files["privacy_loss_records.json"])["note"]
    assert rows("display_preferences", "display_preferences") == []  # still empty, and still there

    recipients = json.loads(files["recipients.json"])
    assert any(p["purpose"] == "debt collection" for p in recipients["purposes_and_recipients"])
    [assignment] = recipients["installer_assignments"]
    assert (assignment["installer"], assignment["company"]) == ("ivo", "Warmte BV")
    assert assignment["purpose"].startswith("installing, testing, commissioning")
    assert [r["username"] if "username" in r else r["resident"] for r in recipients["resident_grants"]] == [
        "rita"
    ]
    assert [(r["reader"], r["company"], r["resource"]) for r in recipients["reads"]] == [
        ("ivo", "Warmte BV", "devices")
    ]
    manifest = json.loads(files["manifest.json"])
    by_id = {c["id"]: c for c in manifest["categories"]}
    assert by_id["energy_readings"]["rows"] == {"energy_readings": seeded["energy_readings"]}
    assert by_id["billing_records"]["legal_minimum"] == "7 years"
    assert "Kept: 7 years" in files["README.txt"].decode()
    # Only she downloads it: the privacy officer sees the request, never its content.
    by_officer = await portal.client.get(filed["download_url"], headers=world.olga.headers)
    assert by_officer.status_code == 403
    assert portal.sql("SELECT count(*) FROM audit_records") == [(1,)]  # the installer's read, nothing more


async def test_a_residents_export_is_ready_once_the_officer_completes_it_and_only_she_downloads_it(
    world: World,
):
    portal = world.portal
    filed = await file(world, world.anna, {"kind": "access", "subject_username": "rita"})
    url = f"/api/v1/privacy/requests/{filed['request_id']}/download"
    early = await portal.client.get(url, headers=world.rita.headers)
    assert (early.status_code, early.json()["detail"]) == (
        409,
        f"the export of request {filed['request_id']} is not ready: the request is received",
    )
    await set_status(world, filed["request_id"], "completed")
    response = await portal.client.get(url, headers=world.rita.headers)
    assert response.status_code == 200
    files = unzip(response.content)
    assert json.loads(files["user_data.json"])["tables"]["users"][0]["username"] == "rita"
    # Her home, for the time she was granted it, without the owner's address.
    [home] = json.loads(files["product_information.json"])["tables"]["sites"]
    assert (home["label"], home["street"]) == ("Grachtenhuis", None)
    # Anna filed it for her and follows it, but does not get its content; Bert does not even see it.
    assert (await portal.client.get(url, headers=world.anna.headers)).status_code == 403
    assert (await portal.client.get(url, headers=world.bert.headers)).status_code == 404
    # What Anna and the officer did about Rita's request is in the audit trail; no one read her export.
    assert portal.sql(
        "SELECT actor_role, action, resource, subject_user_id FROM audit_records ORDER BY 1"
    ) == [
        ("owner", "file", "subject_request", world.user_id(world.rita)),
        ("privacy_officer", "complete", "subject_request", world.user_id(world.rita)),
    ]


async def test_erasure_by_the_officer_removes_the_subject_and_keeps_billing_records_for_seven_years(
    world: World,
):
    portal = world.portal
    seed_anna(world)
    anna_id = world.user_id(world.anna)
    filed = await file(world, world.anna, {"kind": "erasure"})
    assert filed["status"] == "received"
    # Her contract ended a year ago: the fiscal duty keeps the billing record six years more.
    ended = dt.datetime.now(dt.UTC) - dt.timedelta(days=365)
    portal.sql(
        "UPDATE contracts SET started_at = %s - interval '5 years', ended_at = %s WHERE holder_user_id = %s",
        ended,
        ended,
        anna_id,
    )
    # Two privacy officers: Olga proposes it, Oscar approves it, which carries it out.
    oscar = portal.add_person("oscar", "privacy_officer")
    assert (await portal.sign_in(oscar)).status_code == 200
    proposal = await portal.client.post(
        f"/api/v1/privacy/requests/{filed['request_id']}/proposal",
        json={"note": "identity checked"},
        headers=world.olga.headers,
    )
    assert proposal.status_code == 200, proposal.text
    approval = await portal.client.post(
        f"/api/v1/privacy/requests/{filed['request_id']}/approval",
        json={"decision": "approve"},
        headers=oscar.headers,
    )
    assert approval.status_code == 200, approval.text
    done = approval.json()
    assert (done["status"], done["subject_username"], done["filed_by_username"]) == ("completed", None, None)
    assert (done["proposed_by_username"], done["approved_by_username"]) == ("olga", "oscar")
    assert done["outcome"].endswith(
        "kept with a pseudonym in place of your name, for accountability (GDPR art. 5(2)): audit records "
        "(2 years from the time it was recorded); data-subject requests (2 years from the closing of the "
        "request)"
    )
    kept_until = (ended + dt.timedelta(days=7 * 365 + 2)).date()
    assert "erased:" in done["outcome"]
    assert "User data: billing records (1) are kept until" in done["outcome"]
    assert "art. 52 AWR" in done["outcome"]
    assert abs(
        dt.date.fromisoformat(done["outcome"].split("kept until ")[1][:10]) - kept_until
    ) <= dt.timedelta(days=2)
    assert portal.sql("SELECT count(*) FROM users WHERE user_id = %s", anna_id) == [(0,)]
    assert portal.sql("SELECT count(*) FROM energy_readings") == [(0,)]
    assert portal.sql("SELECT count(*) FROM sites WHERE site_id = %s", world.site_id) == [(0,)]
    assert portal.sql("SELECT count(*) FROM marketing_contacts") == [(0,)]
    assert portal.sql(
        "SELECT count(*), bool_and(holder_user_id IS NULL) FROM contracts WHERE ended_at IS NOT NULL"
    ) == [(1, True)]
    # The request stays, as proof it was answered, naming no one.
    stored = portal.sql("SELECT subject_user_id, filed_by_user_id, status, trail::text FROM subject_requests")
    assert [(s[0], s[1], s[2]) for s in stored] == [(None, None, "completed")]
    assert [e["actor_user_id"] for e in json.loads(stored[0][3])] == [
        None,
        world.user_id(world.olga),
        oscar.account.user_id,
    ]
    # Rita, Anna's resident, stays: she has her own account.
    assert portal.sql("SELECT count(*) FROM users WHERE username = 'rita'") == [(1,)]


async def test_the_queue_lists_open_requests_soonest_due_first_and_flags_the_overdue(world: World):
    portal = world.portal
    first = await file(world, world.anna, {"kind": "erasure"})
    second = await file(world, world.anna, {"kind": "access", "subject_username": "rita"})
    third = await file(world, world.bert, {"kind": "erasure"})
    done = await file(world, world.bert, {"kind": "access"})  # completed at once: not in the queue
    # The second was received 30 days ago: two days overdue.
    portal.sql(
        "UPDATE subject_requests SET received_at = received_at - interval '30 days' WHERE request_id = %s",
        second["request_id"],
    )
    queue = await portal.client.get("/api/v1/privacy/queue", headers=world.olga.headers)
    assert queue.status_code == 200
    assert [(r["request_id"], r["overdue"], r["days_left"]) for r in queue.json()] == [
        (second["request_id"], True, -2),
        (first["request_id"], False, 28),
        (third["request_id"], False, 28),
    ]
    soon = await portal.client.get(
        "/api/v1/privacy/requests", params={"due_before": in_days(7)}, headers=world.olga.headers
    )
    assert [r["request_id"] for r in soon.json()] == [second["request_id"]]
    completed = await portal.client.get(
        "/api/v1/privacy/requests", params={"status": "completed"}, headers=world.olga.headers
    )
    assert [r["request_id"] for r in completed.json()] == [done["request_id"]]
    assert (await portal.client.get("/api/v1/privacy/queue", headers=world.anna.headers)).status_code == 403
    refuse = await set_status(world, third["request_id"], "refused", expect=422)
    assert refuse["detail"] == "body field note: say why the request is refused; the subject is told"


async def test_the_officer_finds_an_account_by_email_and_the_lookup_is_recorded(world: World):
    portal = world.portal
    found = await portal.client.get(
        "/api/v1/privacy/subjects", params={"email": " Anna@Example.org"}, headers=world.olga.headers
    )
    assert found.status_code == 422  # a blank before the address is not an address
    found = await portal.client.get(
        "/api/v1/privacy/subjects", params={"email": "ANNA@example.org"}, headers=world.olga.headers
    )
    assert [(a["username"], a["role"]) for a in found.json()] == [("anna", "owner")]
    assert portal.sql("SELECT resource, subject_user_id FROM audit_records") == [
        ("account", world.user_id(world.anna))
    ]


def test_every_table_of_every_personal_category_has_an_export():
    tables = {
        table for category in load_catalogue().categories if category.personal for table in category.tables
    }
    assert tables == set(TABLES)


def iban(country: str, account: str) -> str:
    digits = "".join(str(int(char, 36)) for char in account + country + "00")
    return f"{country}{98 - int(digits) % 97:02d}{account}"


@given(
    country=st.sampled_from(["NL", "BE", "DE"]),
    account=st.text(alphabet="0123456789", min_size=12, max_size=20),  # every digit changed is caught
    position=st.integers(min_value=4),
)
def test_an_iban_is_accepted_only_with_matching_check_digits(country: str, account: str, position: int):
    valid = iban(country, account)
    assert _iban_problem(valid) is None
    assert _iban_problem(" ".join(valid[i : i + 4] for i in range(0, len(valid), 4)).lower()) is None
    index = position % (len(valid) - 4) + 4
    changed = valid[:index] + ("1" if valid[index] != "1" else "2") + valid[index + 1 :]
    assert _iban_problem(changed) is not None
