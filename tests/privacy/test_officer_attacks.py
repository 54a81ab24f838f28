"""Privacy officers who check each other, and an audit trail no one erases early (issue 14, items 2 and 4).

Each test performs an attack as the attacker would: a privacy officer, an owner or a database role, through
the real API or straight at the database, and compares what is left with what must be left.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import zipfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, LiteralString, cast

import asyncpg
import psycopg
import pytest

from ops.localstack import PostgresCluster
from privacy.keys.ledger import ErasureEntry, ErasureLedger
from retention.worker import run_retention
from tests.fixtures.database import Database
from tests.fixtures.portal import Person, Portal, built_once, in_days, portal_on_copy, running_portal
from thuis.catalogue import load_catalogue

EMAIL = "anna@example.org"
HOLDER = "Anna de Vries"
SERIAL = "MXM-ANNA-7"


@dataclass
class World:
    portal: Portal
    anna: Person  # owner of Grachtenhuis
    rita: Person  # resident of Grachtenhuis
    ivo: Person  # installer assigned to Grachtenhuis
    olga: Person  # privacy officer
    oscar: Person  # privacy officer
    pia: Person  # privacy officer
    site_id: int

    def user_id(self, person: Person) -> int:
        return person.account.user_id


PEOPLE = {
    "anna": ("owner", {"email": EMAIL, "holder_name": HOLDER}),
    "rita": ("resident", {"resident_of": "anna"}),
    "ivo": ("installer", {"company": "Warmte BV"}),
    "olga": ("privacy_officer", {}),
    "oscar": ("privacy_officer", {}),
    "pia": ("privacy_officer", {}),
}


@dataclass(frozen=True)
class WorldTemplate:
    """The world built once per module, its database frozen to be copied, its people signed in."""

    database: Database
    people: dict[str, Person]
    site_id: int


async def build_world(database: Database) -> WorldTemplate:
    """Make the people, Anna's home with Rita's grant and a gateway, and sign everyone in."""
    async with running_portal(database) as portal:
        for username, (role, extra) in PEOPLE.items():
            portal.add_person(username, role, **extra)
        site_id = portal.add_site("Grachtenhuis", owner="anna")
        portal.sql(
            "INSERT INTO resident_grants (site_id, resident_user_id, granted_by, invited_username, "
            "accepted_at) "
            "SELECT %s, r.user_id, a.user_id, 'rita', now() FROM users r, users a WHERE r.username = 'rita' "
            "AND a.username = 'anna'",  # an accepted invitation
            site_id,
        )
        portal.sql(
            "INSERT INTO gateways (gateway_serial, vendor, site_id) VALUES (%s, 'maxem', %s)", SERIAL, site_id
        )
        for person in portal.people.values():
            assert (await portal.sign_in(person)).status_code == 200, person.username
        return WorldTemplate(database, dict(portal.people), site_id)


@pytest.fixture(scope="module")
def world_template(
    pg_cluster: PostgresCluster, template_database: str, workdir: Path
) -> Iterator[WorldTemplate]:
    """Build the world once for the module: six accounts (three with TOTP), signed in."""
    with built_once(pg_cluster, template_database, workdir, build_world) as template:
        yield template


@pytest.fixture
async def world(
    pg_cluster: PostgresCluster, world_template: WorldTemplate, workdir: Path
) -> AsyncIterator[World]:
    """A copy of the world for one test: the same people, signed in with the same sessions."""
    async with portal_on_copy(pg_cluster, world_template.database, world_template.people, workdir) as portal:
        yield World(portal, *(portal.people[name] for name in PEOPLE), world_template.site_id)


async def call(
    world: World, person: Person, method: str, url: str, body: dict[str, Any] | None = None, *, expect: int
) -> dict[str, Any]:
    response = await world.portal.client.request(method, url, json=body, headers=person.headers)
    assert response.status_code == expect, (person.username, method, url, response.text)
    if response.headers["content-type"] == "application/zip":
        return {"zip": response.content}
    result: dict[str, Any] = response.json()
    return result


async def file(world: World, person: Person, body: dict[str, Any]) -> int:
    filed = await call(world, person, "POST", "/api/v1/privacy/requests", body, expect=201)
    request_id: int = filed["request_id"]
    return request_id


def request_url(request_id: int, what: str = "") -> str:
    return f"/api/v1/privacy/requests/{request_id}{what}"


def anna_exists(world: World) -> bool:
    return world.portal.sql("SELECT count(*) FROM users WHERE username = 'anna'") == [(1,)]


def ledger_entries(world: World) -> list[ErasureEntry]:
    return ErasureLedger(world.portal.database.erasure_ledger_file).entries()


async def test_one_officer_alone_cannot_erase_anyone_and_a_second_must_approve(world: World):
    olga, oscar, pia = world.olga, world.oscar, world.pia
    # Olga files an erasure for Anna (a letter reached her) and tries to carry it out alone.
    request_id = await file(world, olga, {"kind": "erasure", "subject_username": "anna"})
    alone = await call(
        world, olga, "POST", request_url(request_id, "/status"), {"status": "completed"}, expect=409
    )
    assert alone["detail"] == (
        f"request {request_id} is an erasure: it is carried out only when a second privacy officer approves "
        f"it; propose it with POST /api/v1/privacy/requests/{request_id}/proposal"
    )
    assert anna_exists(world)

    # Oscar proposes it; neither he (the proposer) nor Olga (who filed it) can approve it.
    proposed = await call(
        world, oscar, "POST", request_url(request_id, "/proposal"), {"note": "identity checked"}, expect=200
    )
    assert (proposed["status"], proposed["proposed_by_username"], proposed["approved_by_username"]) == (
        "in_progress",
        "oscar",
        None,
    )
    again = await call(world, olga, "POST", request_url(request_id, "/proposal"), {}, expect=409)
    assert again["detail"] == f"request {request_id} was proposed for completion by oscar already"
    own = await call(
        world, oscar, "POST", request_url(request_id, "/approval"), {"decision": "approve"}, expect=403
    )
    assert own["detail"] == (
        f"you proposed request {request_id} yourself: a second privacy officer approves it"
    )
    filer = await call(
        world, olga, "POST", request_url(request_id, "/approval"), {"decision": "approve"}, expect=403
    )
    assert filer["detail"] == (
        f"you filed request {request_id} yourself: a privacy officer who did not file it approves it"
    )
    for officer in (olga, oscar):  # nor does completing it through the status, by anyone
        await call(
            world, officer, "POST", request_url(request_id, "/status"), {"status": "completed"}, expect=409
        )
    assert anna_exists(world)
    assert ledger_entries(world) == []  # nothing refused reached the erasure ledger
    # The owner and the resident have no say in it at all.
    for person in (world.anna, world.rita, world.ivo):
        response = await world.portal.client.post(
            request_url(request_id, "/approval"), json={"decision": "approve"}, headers=person.headers
        )
        assert response.status_code in (403, 404), person.username
    assert anna_exists(world)

    # Pia, a third officer, approves: now it is done, and the request says who proposed and who approved.
    done = await call(
        world, pia, "POST", request_url(request_id, "/approval"), {"decision": "approve"}, expect=200
    )
    assert not anna_exists(world)
    assert (done["status"], done["proposed_by_username"], done["approved_by_username"]) == (
        "completed",
        "oscar",
        "pia",
    )
    proposed_at, approved_at = (dt.datetime.fromisoformat(done[k]) for k in ("proposed_at", "approved_at"))
    assert proposed_at <= approved_at <= dt.datetime.now(dt.UTC)
    assert [(e["status"], e["actor_user_id"]) for e in done["trail"]] == [
        ("received", world.user_id(olga)),
        ("in_progress", world.user_id(oscar)),
        ("completed", world.user_id(pia)),
    ]
    stored = world.portal.sql(
        "SELECT proposed_by_user_id, approved_by_user_id, closed_at = approved_at FROM subject_requests "
        "WHERE request_id = %s",
        request_id,
    )
    assert stored == [(world.user_id(oscar), world.user_id(pia), True)]
    # The approval wrote the erasure to the ledger before it committed, the database records it as applied,
    # and Anna's home's gateway waits for the revocation worker.
    [entry] = ledger_entries(world)
    assert entry.subject_user_id == world.user_id(world.anna)
    assert world.portal.sql("SELECT entry_id, subject_user_id, applied_by FROM applied_erasures") == [
        (entry.entry_id, world.user_id(world.anna), "erasure")
    ]
    assert world.portal.sql("SELECT gateway_serial, reason FROM gateway_revocations") == [(SERIAL, "deleted")]


async def test_an_approval_whose_proposer_is_gone_erases_nothing_and_writes_nothing_to_the_ledger(
    world: World,
):
    # Oscar proposes Anna's erasure, then his own account goes (removed by the operator, say). The database
    # would refuse to complete the erasure without a proposer who is a privacy officer; the approval is
    # refused before anything is erased, so the ledger holds no erasure the database then lacks (which
    # would keep every service from starting, and have `thuis erasures reapply` erase Anna regardless).
    request_id = await file(world, world.anna, {"kind": "erasure"})
    await call(world, world.oscar, "POST", request_url(request_id, "/proposal"), {}, expect=200)
    world.portal.sql("DELETE FROM sessions WHERE user_id = %s", world.user_id(world.oscar))
    world.portal.sql("DELETE FROM users WHERE username = 'oscar'")
    refused = await call(
        world, world.pia, "POST", request_url(request_id, "/approval"), {"decision": "approve"}, expect=409
    )
    assert refused["detail"].startswith(
        f"the privacy officer who proposed request {request_id} has no account"
    )
    assert anna_exists(world)
    assert ledger_entries(world) == []
    assert world.portal.sql("SELECT count(*) FROM applied_erasures") == [(0,)]
    # Rejected, proposed again by an officer who is there and approved by another, it is carried out.
    await call(
        world,
        world.pia,
        "POST",
        request_url(request_id, "/approval"),
        {"decision": "reject", "note": "the proposer left"},
        expect=200,
    )
    await call(world, world.olga, "POST", request_url(request_id, "/proposal"), {}, expect=200)
    await call(
        world, world.pia, "POST", request_url(request_id, "/approval"), {"decision": "approve"}, expect=200
    )
    assert not anna_exists(world)
    assert [entry.subject_user_id for entry in ledger_entries(world)] == [world.user_id(world.anna)]


async def test_an_approval_whose_erasure_cannot_be_written_to_the_ledger_erases_nothing_and_says_so(
    world: World, tmp_path: Path
):
    # The ledger beside the keyring cannot be written (a full disk, a volume gone): the erasure is not
    # carried out, the approval is not recorded, and the officer is told why, not given a bare 500.
    request_id = await file(world, world.anna, {"kind": "erasure"})
    await call(world, world.olga, "POST", request_url(request_id, "/proposal"), {}, expect=200)
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the ledger's folder should be")
    assert world.portal.app is not None
    world.portal.app.state.erasure_ledger = ErasureLedger(blocked / "erasure-ledger.jsonl")
    refused = await call(
        world, world.oscar, "POST", request_url(request_id, "/approval"), {"decision": "approve"}, expect=503
    )
    assert refused["detail"] == (
        f"request {request_id}: the erasure ledger cannot be written, so nothing was erased; the operator "
        "must make it writable before the erasure is approved again"
    )
    assert anna_exists(world)
    assert world.portal.sql(
        "SELECT status, approved_at FROM subject_requests WHERE request_id = %s", request_id
    ) == [("in_progress", None)]
    assert world.portal.sql("SELECT count(*) FROM applied_erasures") == [(0,)]


async def test_a_proposal_is_rejected_with_a_note_and_only_an_erasure_takes_one(world: World):
    olga, oscar = world.olga, world.oscar
    request_id = await file(world, world.anna, {"kind": "erasure"})
    await call(world, olga, "POST", request_url(request_id, "/proposal"), {}, expect=200)
    bare = await call(
        world, oscar, "POST", request_url(request_id, "/approval"), {"decision": "reject"}, expect=422
    )
    assert bare["detail"] == "body field note: say why the proposal is rejected"
    rejected = await call(
        world,
        oscar,
        "POST",
        request_url(request_id, "/approval"),
        {"decision": "reject", "note": "the identity check is missing"},
        expect=200,
    )
    assert (rejected["status"], rejected["proposed_by_username"], rejected["proposed_at"]) == (
        "in_progress",
        None,
        None,
    )
    assert rejected["trail"][-1]["note"] == "proposal rejected: the identity check is missing"
    nothing = await call(
        world, oscar, "POST", request_url(request_id, "/approval"), {"decision": "approve"}, expect=409
    )
    assert nothing["detail"].startswith(f"request {request_id} has no proposal to decide on")
    # Proposed again, by the same officer; still Anna is there until someone else approves.
    await call(world, olga, "POST", request_url(request_id, "/proposal"), {"note": "checked"}, expect=200)
    assert anna_exists(world)
    assert world.portal.sql(
        "SELECT actor_role, action FROM audit_records WHERE resource = 'subject_request' ORDER BY occurred_at"
    ) == [
        ("privacy_officer", "propose_erasure"),
        ("privacy_officer", "reject_erasure"),
        ("privacy_officer", "propose_erasure"),
    ]
    # Only an erasure is proposed; and an officer never proposes their own erasure.
    access = await file(world, world.anna, {"kind": "restriction", "details": {"action": "start"}})
    other = await call(world, olga, "POST", request_url(access, "/proposal"), {}, expect=409)
    assert "which one privacy officer completes" in other["detail"]
    own = await file(world, olga, {"kind": "erasure"})
    mine = await call(world, olga, "POST", request_url(own, "/proposal"), {}, expect=403)
    assert mine["detail"] == f"request {own} is about you: other privacy officers propose and approve it"


async def test_the_database_refuses_an_erasure_completed_without_a_second_officer(world: World):
    request_id = await file(world, world.olga, {"kind": "erasure", "subject_username": "anna"})
    await call(world, world.olga, "POST", request_url(request_id, "/proposal"), {}, expect=200)
    olga = world.user_id(world.olga)
    with psycopg.connect(world.portal.database.api_url, autocommit=True) as conn:
        for statement, params in (
            ("UPDATE subject_requests SET status = 'completed', closed_at = now() WHERE request_id = %s", ()),
            (  # the portal's role approving with the proposer's own id
                "UPDATE subject_requests SET approved_by_user_id = %s, approved_at = now(), "
                "status = 'completed', closed_at = now() WHERE request_id = %s",
                (olga,),
            ),
        ):
            with pytest.raises(psycopg.errors.CheckViolation):
                conn.execute(cast("LiteralString", statement), (*params, request_id))
    assert world.portal.sql("SELECT status FROM subject_requests WHERE request_id = %s", request_id) == [
        ("in_progress",)
    ]


async def test_no_officer_downloads_an_access_export_at_any_status(world: World):
    olga, oscar = world.olga, world.oscar
    request_id = await file(world, olga, {"kind": "access", "subject_username": "anna"})
    for step in (None, "in_progress", "completed"):
        if step is not None:
            await call(world, olga, "POST", request_url(request_id, "/status"), {"status": step}, expect=200)
        for officer in (olga, oscar):
            refused = await call(world, officer, "GET", request_url(request_id, "/download"), expect=403)
            assert refused["detail"] == (
                f"only the subject of request {request_id} downloads its access export, from their privacy "
                "page; a privacy officer never downloads a subject's data"
            )
            seen = await call(world, officer, "GET", request_url(request_id), expect=200)
            assert seen["download_url"] is None
    # A refused one too: the officer gets the same answer, whatever the status.
    refused_id = await file(world, olga, {"kind": "access", "subject_username": "anna"})
    await call(
        world,
        olga,
        "POST",
        request_url(refused_id, "/status"),
        {"status": "refused", "note": "x"},
        expect=200,
    )
    await call(world, olga, "GET", request_url(refused_id, "/download"), expect=403)
    # Anna, the subject, can; and nothing of her data went to anyone else.
    files = await call(world, world.anna, "GET", request_url(request_id, "/download"), expect=200)
    with zipfile.ZipFile(io.BytesIO(files["zip"])) as archive:
        users = json.loads(archive.read("user_data.json"))["tables"]["users"]
    assert [(u["username"], u["email"]) for u in users] == [("anna", EMAIL)]
    assert world.portal.sql("SELECT count(*) FROM audit_records WHERE resource = 'access_export'") == [(0,)]


async def test_an_owner_who_filed_for_their_resident_cannot_download_it_and_the_resident_can(world: World):
    anna, rita = world.anna, world.rita
    request_id = await file(world, anna, {"kind": "access", "subject_username": "rita"})
    refused = await call(world, anna, "GET", request_url(request_id, "/download"), expect=403)
    assert refused["detail"].startswith(
        f"only the subject of request {request_id} downloads its access export"
    )
    early = await call(world, rita, "GET", request_url(request_id, "/download"), expect=409)
    assert early["detail"] == f"the export of request {request_id} is not ready: the request is received"
    await call(
        world, world.olga, "POST", request_url(request_id, "/status"), {"status": "completed"}, expect=200
    )
    await call(world, anna, "GET", request_url(request_id, "/download"), expect=403)
    assert (await call(world, anna, "GET", request_url(request_id), expect=200))["download_url"] is None
    mine = await call(world, rita, "GET", request_url(request_id), expect=200)
    assert mine["download_url"] == request_url(request_id, "/download")
    files = await call(world, rita, "GET", mine["download_url"], expect=200)
    with zipfile.ZipFile(io.BytesIO(files["zip"])) as archive:
        assert json.loads(archive.read("user_data.json"))["tables"]["users"][0]["username"] == "rita"


def audit_rows(world: World) -> list[dict[str, Any]]:
    with psycopg.connect(world.portal.database.owner_url) as conn:
        cursor = conn.execute("SELECT a.*, a::text AS row_text FROM audit_records a ORDER BY occurred_at")
        names = [column.name for column in cursor.description or []]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


async def test_after_erasure_the_staffs_reads_of_the_subject_stay_without_their_personal_data(world: World):
    portal, olga, oscar = world.portal, world.olga, world.oscar
    anna_id = world.user_id(world.anna)
    # The installer reads Anna's home; the officer finds her by email and reads her rectified values.
    assigned = await call(
        world,
        world.anna,
        "POST",
        f"/api/v1/sites/{world.site_id}/assignments",
        {"installer_username": "ivo", "expires_at": in_days(7)},
        expect=201,
    )
    await call(world, world.ivo, "GET", f"/api/v1/sites/{world.site_id}/owner", expect=200)
    found = await call(world, olga, "GET", f"/api/v1/privacy/subjects?email={EMAIL}", expect=200)
    assert [a["username"] for a in found] == ["anna"]
    rectification = await file(world, world.anna, {"kind": "rectification", "details": {"city": "Delft"}})
    await call(world, olga, "GET", request_url(rectification), expect=200)
    reads_before = [
        (
            r["occurred_at"],
            r["actor_user_id"],
            r["actor_role"],
            r["action"],
            r["resource"],
            r["assignment_id"],
        )
        for r in audit_rows(world)
    ]
    assert [(r[2], r[4]) for r in reads_before] == [
        ("installer", "owner"),
        ("privacy_officer", "account"),
        ("privacy_officer", "request_details"),
    ]
    assert reads_before[0][5] == assigned["assignment_id"]

    erasure = await file(world, world.anna, {"kind": "erasure"})
    await call(
        world, olga, "POST", request_url(erasure, "/proposal"), {"note": "identity checked"}, expect=200
    )
    await call(world, oscar, "POST", request_url(erasure, "/approval"), {"decision": "approve"}, expect=200)
    assert not anna_exists(world)

    after = audit_rows(world)
    kept = [
        (
            r["occurred_at"],
            r["actor_user_id"],
            r["actor_role"],
            r["action"],
            r["resource"],
            r["assignment_id"],
        )
        for r in after
    ]
    # Every read is still there, by the same staff, at the same moment, under the same assignment...
    assert kept[: len(reads_before)] == reads_before
    # ... and so are the officers' actions on the erasure, each by its officer.
    assert [
        (r["actor_user_id"], r["action"], r["resource"], r["detail"]) for r in after[len(reads_before) :]
    ] == [
        (world.user_id(olga), "propose_erasure", "subject_request", f"request {erasure}"),
        (world.user_id(oscar), "approve_erasure", "subject_request", f"request {erasure}"),
    ]
    # Every record about Anna names her by one pseudonym only, and holds nothing of hers.
    about_anna = [r for r in after if r["subject_pseudonym"] is not None]
    assert len(about_anna) == len(after)
    assert len({r["subject_pseudonym"] for r in about_anna}) == 1
    for row in after:
        assert (row["subject_user_id"], row["site_id"]) == (None, None), row
        for word in ("anna", EMAIL, HOLDER, SERIAL, "Grachtenhuis", "Delft"):
            assert word.lower() not in row["row_text"].lower(), (word, row["row_text"])
    assert anna_id not in {r["actor_user_id"] for r in after}
    # The erasure request carries the same pseudonym: the trail of her erasure can be followed, not her.
    assert portal.sql(
        "SELECT subject_pseudonym::text FROM subject_requests WHERE request_id = %s", erasure
    ) == [(str(about_anna[0]["subject_pseudonym"]),)]
    trail = await call(world, olga, "GET", "/api/v1/audit", expect=200)
    assert {item["subject_pseudonym"] for item in trail["items"]} == {str(about_anna[0]["subject_pseudonym"])}


ROLES = ("api_url", "export_url", "retention_url", "ingest_url", "rollup_url")
TAMPERING = (
    "DELETE FROM audit_records",
    "UPDATE audit_records SET detail = NULL",
    "UPDATE audit_records SET subject_user_id = NULL, actor_user_id = NULL",
    "UPDATE audit_records SET occurred_at = occurred_at - interval '3 years'",
    "TRUNCATE audit_records",
)


def seed_audit(database: Database, ages_in_days: list[float]) -> None:
    with psycopg.connect(database.owner_url, autocommit=True) as conn:
        for age in ages_in_days:
            conn.execute(
                "INSERT INTO audit_records (occurred_at, actor_user_id, actor_role, action, subject_user_id, "
                "resource, detail) VALUES (now() - %s * interval '1 day', 7, 'privacy_officer', 'read', 8, "
                "'account', 'found by email')",
                (age,),
            )


def audit_count(database: Database) -> int:
    with psycopg.connect(database.owner_url) as conn:
        row = conn.execute("SELECT count(*) FROM audit_records").fetchone()
        assert row is not None
        return int(row[0])


@pytest.mark.parametrize("role", ROLES)
def test_no_service_role_can_change_or_delete_audit_records(database: Database, role: str):
    seed_audit(database, [1, 400])
    with psycopg.connect(getattr(database, role), autocommit=True) as conn:
        for statement in TAMPERING:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(cast("LiteralString", statement))
    assert audit_count(database) == 2


def test_not_even_the_schema_owner_changes_or_deletes_an_audit_record_row_by_row(database: Database):
    seed_audit(database, [1, 400])
    with psycopg.connect(database.owner_url, autocommit=True) as conn:
        for statement in (
            "DELETE FROM audit_records",
            "UPDATE audit_records SET detail = 'nothing happened'",
            "UPDATE audit_records SET occurred_at = occurred_at - interval '3 years'",
            "UPDATE audit_records SET actor_user_id = 9",
            "UPDATE audit_records SET resource = 'site'",
            "UPDATE audit_records SET subject_pseudonym = gen_random_uuid()",  # without removing the id
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="audit records"):
                conn.execute(cast("LiteralString", statement))
        # What erasure does is the one change allowed: an id replaced by a pseudonym, the detail dropped.
        conn.execute(
            "UPDATE audit_records SET subject_user_id = NULL, subject_pseudonym = gen_random_uuid(), "
            "detail = NULL WHERE occurred_at > now() - interval '2 days'"
        )
    assert audit_count(database) == 2


async def test_retention_removes_audit_records_only_past_their_period(database: Database):
    audit_category = next(c for c in load_catalogue().categories if c.id == "audit_records")
    assert audit_category.keep_text == "2 years"
    # Ages in days around the 2-year mark (730 or 731 days, whichever the calendar says), and recent ones.
    seed_audit(database, [3 * 365, 2 * 366 + 2, 2 * 365 - 2, 30, 0.1])
    with psycopg.connect(database.retention_url, autocommit=True) as conn:
        for older_than in ("now()", "now() - interval '2 years' + interval '1 day'", "'infinity'"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="younger than 2 years"):
                conn.execute(
                    cast("LiteralString", f"SELECT retention_drop_chunks('audit_records', {older_than})")
                )
    assert audit_count(database) == 5
    # A retention run with its clock set a year ahead is refused for audit records, and removes none.
    retention = await asyncpg.connect(database.retention_url)
    try:
        ahead = dt.datetime.now(dt.UTC) + dt.timedelta(days=365)
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="younger than 2 years"):
            await run_retention(retention, load_catalogue(), now=ahead)
        assert audit_count(database) == 5
        # With the true clock, exactly the two records older than 2 years go.
        removals = await run_retention(retention, load_catalogue(), now=dt.datetime.now(dt.UTC))
    finally:
        await retention.close()
    [audit] = [r for r in removals if r.table == "audit_records"]
    assert audit.rows == 2
    assert audit_count(database) == 3
