"""A new email address takes effect only when the link sent to it is followed; the old one is told.

The attack: Mallory, an owner, sets a stranger's address on her own account and files an access request.
Were the address in force at once, her ZIP would hold the stranger's marketing record and the privacy
officer's lookup by email would find Mallory (whose erasure would then delete the stranger's record).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import zipfile
from collections.abc import AsyncIterator

import pytest

from privacy.subjects import records
from tests.fixtures.database import Database
from tests.fixtures.mail import MailServer, confirmation_token, text_of
from tests.fixtures.portal import Person, Portal, running_portal
from tests.support import as_owner

STRANGER = "stranger@example.org"
ANNA_EMAIL = "anna@example.org"
NEW_EMAIL = "anna.devries@example.net"


@pytest.fixture
async def portal(database: Database, mail: MailServer) -> AsyncIterator[Portal]:
    async with running_portal(database, smtp_port=mail.port) as p:
        yield p


def add_marketing_contact(portal: Portal, email: str, name: str) -> None:
    database = portal.database
    as_owner(
        database.owner_url,
        records.add_marketing_contact,
        database.keyring,
        email=email,
        name=name,
        last_activity_at=dt.datetime.now(dt.UTC),
    )


async def change_email(portal: Portal, person: Person, email: str | None) -> dict[str, object]:
    response = await portal.client.put(
        "/api/v1/account/email",
        headers=person.headers,
        json={"email": email, "current_password": person.password},
    )
    assert response.status_code in (200, 202), response.text
    result: dict[str, object] = response.json()
    return result


async def confirm(portal: Portal, token: str) -> int:
    response = await portal.client.post("/api/v1/account/email/confirm", json={"token": token})
    return response.status_code


async def marketing_rows_in_access_zip(portal: Portal, person: Person) -> list[dict[str, object]]:
    filed = await portal.client.post(
        "/api/v1/privacy/requests", json={"kind": "access"}, headers=person.headers
    )
    assert filed.status_code == 201, filed.text
    download = await portal.client.get(filed.json()["download_url"], headers=person.headers)
    assert download.status_code == 200, download.text
    with zipfile.ZipFile(io.BytesIO(download.content)) as archive:
        document = json.loads(archive.read("marketing_contacts.json"))
    rows: list[dict[str, object]] = document["tables"]["marketing_contacts"]
    return rows


async def test_a_strangers_address_takes_no_effect_without_the_link(portal: Portal, mail: MailServer):
    add_marketing_contact(portal, STRANGER, "Stranger Danger")
    mallory = portal.add_person("mallory", "owner")
    officer = portal.add_person("olga", "privacy_officer")
    await portal.sign_in(mallory)
    await portal.sign_in(officer)
    # Mallory tries every form the request might take; with her password it is accepted, as pending.
    for body in ({"email": STRANGER}, {"email": STRANGER, "current_password": mallory.password}):
        await portal.client.put("/api/v1/account/email", headers=mallory.headers, json=body)
    me = await portal.client.get("/api/v1/account", headers=mallory.headers)
    assert me.json()["email"] is None  # still her old (no) address
    assert me.json()["pending_email"] == STRANGER
    assert await marketing_rows_in_access_zip(portal, mallory) == []
    found = await portal.client.get(
        "/api/v1/privacy/subjects", params={"email": STRANGER}, headers=officer.headers
    )
    assert found.status_code == 200
    assert found.json() == []
    assert portal.sql(
        "SELECT count(*) FROM users WHERE email_hash = %s", portal.database.keyring.email_hash(STRANGER)
    ) == [(0,)]
    # Nothing happened but this: the stranger's mailbox got the link, saying what to do if unasked.
    [link_mail] = await mail.wait_for(STRANGER)
    assert "/account/email/confirm?token=" in text_of(link_mail)
    assert "did not ask" in text_of(link_mail)


async def test_the_link_confirms_the_new_address_once_and_the_old_one_is_told(
    portal: Portal, mail: MailServer
):
    add_marketing_contact(portal, NEW_EMAIL, "Anna dV")
    anna = portal.add_person("anna", "owner", email=ANNA_EMAIL)
    await portal.sign_in(anna)
    await change_email(portal, anna, NEW_EMAIL)
    [link_mail] = await mail.wait_for(NEW_EMAIL)
    [notice] = await mail.wait_for(ANNA_EMAIL)
    assert "email" in str(notice["Subject"]).lower()
    assert NEW_EMAIL not in text_of(notice)  # the old address learns of the change, not the new address whole
    token = confirmation_token(link_mail)
    assert token not in text_of(notice)
    # The token is stored only as a hash.
    assert all(
        token.encode() not in bytes(row[0]) for row in portal.sql("SELECT token_sha256 FROM email_changes")
    )
    assert await confirm(portal, token) == 204
    me = await portal.client.get("/api/v1/account", headers=anna.headers)
    assert (me.json()["email"], me.json()["pending_email"]) == (NEW_EMAIL, None)
    assert [row["name"] for row in await marketing_rows_in_access_zip(portal, anna)] == ["Anna dV"]
    # Single use: the same link a second time changes nothing and says so.
    again = await portal.client.post("/api/v1/account/email/confirm", json={"token": token})
    assert again.status_code == 404
    assert again.headers["content-type"] == "application/problem+json"
    assert "used already" in again.json()["detail"]
    # The old address is told that the change took effect, too.
    await mail.wait_for(ANNA_EMAIL, count=2)


async def test_an_expired_or_replaced_link_confirms_nothing(portal: Portal, mail: MailServer):
    anna = portal.add_person("anna", "owner", email=ANNA_EMAIL)
    await portal.sign_in(anna)
    await change_email(portal, anna, "first@example.net")
    first = confirmation_token((await mail.wait_for("first@example.net"))[0])
    await portal.sign_in(anna)  # the change ended every other session: sign in again for the next
    await change_email(portal, anna, "second@example.net")
    second = confirmation_token((await mail.wait_for("second@example.net"))[0])
    assert await confirm(portal, first) == 404  # replaced by the newer request
    portal.sql(
        "UPDATE email_changes SET requested_at = now() - interval '2 days', "
        "expires_at = now() - interval '1 second'"
    )
    assert await confirm(portal, second) == 404
    assert await confirm(portal, "not-a-token") == 404
    me = await portal.client.get("/api/v1/account", headers=anna.headers)
    assert me.json()["email"] == ANNA_EMAIL


async def test_removing_the_address_needs_the_password_and_tells_the_old_address(
    portal: Portal, mail: MailServer
):
    anna = portal.add_person("anna", "owner", email=ANNA_EMAIL)
    await portal.sign_in(anna)
    refused = await portal.client.put("/api/v1/account/email", headers=anna.headers, json={"email": None})
    assert refused.status_code == 422
    assert "current_password" in refused.json()["detail"]
    removed = await change_email(portal, anna, None)
    assert (removed["email"], removed["pending_email"]) == (None, None)
    [notice] = await mail.wait_for(ANNA_EMAIL)
    assert "removed" in text_of(notice)


async def test_the_confirmation_page_asks_before_it_confirms(portal: Portal, mail: MailServer):
    anna = portal.add_person("anna", "owner", email=ANNA_EMAIL)
    await portal.sign_in(anna)
    await change_email(portal, anna, NEW_EMAIL)
    token = confirmation_token((await mail.wait_for(NEW_EMAIL))[0])
    # A mail scanner that follows the link changes nothing: the page has a button that posts.
    shown = await portal.client.get(f"/account/email/confirm?token={token}")
    assert shown.status_code == 200
    assert 'method="post"' in shown.text
    assert portal.sql("SELECT count(*) FROM email_changes") == [(1,)]
    confirmed = await portal.client.post("/account/email/confirm", data={"token": token})
    assert confirmed.status_code == 200
    assert "confirmed" in confirmed.text
    me = await portal.client.get("/api/v1/account", headers=anna.headers)
    assert me.json()["email"] == NEW_EMAIL


async def test_erasure_takes_the_pending_address_the_unsent_mail_and_the_counters(database: Database):
    # The SMTP server is unreachable here, so the mail stays in the outbox until the erasure.
    async with running_portal(database) as portal:
        anna = portal.add_person("anna", "owner", email=ANNA_EMAIL)
        officer = portal.add_person("olga", "privacy_officer")
        second = portal.add_person("pia", "privacy_officer")
        for person in (anna, officer, second):
            await portal.sign_in(person)
        await change_email(portal, anna, NEW_EMAIL)
        await portal.client.post("/api/v1/auth/sign-in", json={"username": "anna", "password": "a guess"})
        counts = (
            "SELECT (SELECT count(*) FROM users WHERE username = 'anna'), "
            "(SELECT count(*) FROM email_changes), (SELECT count(*) FROM mail_outbox), "
            "(SELECT count(*) FROM sign_in_throttle WHERE username = 'anna')"
        )
        assert portal.sql(counts) == [(1, 1, 2, 1)]
        filed = await portal.client.post(
            "/api/v1/privacy/requests", json={"kind": "erasure"}, headers=anna.headers
        )
        assert filed.status_code == 201, filed.text
        portal.sql(
            "UPDATE contracts SET started_at = now() - interval '9 years', "
            "ended_at = now() - interval '8 years'"
        )
        # Four eyes: one officer proposes the erasure, a second approves it, which carries it out.
        request_url = f"/api/v1/privacy/requests/{filed.json()['request_id']}"
        proposed = await portal.client.post(
            f"{request_url}/proposal", json={"note": "identity checked"}, headers=officer.headers
        )
        assert proposed.status_code == 200, proposed.text
        done = await portal.client.post(
            f"{request_url}/approval", json={"decision": "approve"}, headers=second.headers
        )
        assert done.status_code == 200, done.text
        assert portal.sql(counts) == [(0, 0, 0, 0)]
