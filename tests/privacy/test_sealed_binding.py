"""Attacks by someone who can write the database: sealed values and key ids swapped or moved between rows.

Each attack is made with plain SQL as the schema owner (a stolen database password, a rogue operator), then
the victim reads their data through the portal. The sealed value must not open anywhere but in its own row,
column and key: the portal answers with a problem naming the column, never with another person's data or
with a traceback.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.fixtures.database import Database
from tests.fixtures.portal import Person, Portal, running_portal

ADDRESS_A = {"street": "Keizersgracht", "house_number": "123", "postcode": "1015 CJ", "city": "Amsterdam"}
ADDRESS_B = {"street": "Dorpsstraat", "house_number": "7", "postcode": "3511 AB", "city": "Utrecht"}
STRANGER = "stranger@example.net"


@pytest.fixture
async def portal(database: Database) -> AsyncIterator[Portal]:
    async with running_portal(database) as p:
        yield p


async def _set_address(portal: Portal, owner: str, site_id: int, address: dict[str, str]) -> None:
    response = await portal.client.put(
        f"/api/v1/sites/{site_id}/address", json=address, headers=portal.people[owner].headers
    )
    assert response.status_code == 200, response.text


def _assert_refused_without_leak(response_text: str, status: int, leaked: str, column: str) -> None:
    assert status == 500, response_text
    assert leaked not in response_text
    assert "Traceback" not in response_text
    assert column in response_text
    assert "does not open" in response_text


async def test_an_address_swapped_between_two_homes_of_one_owner_does_not_open(portal: Portal):
    # Both homes' addresses are sealed with the same key (the owner's), so only the row binds each value.
    anna = portal.add_person("anna", "owner")
    home = portal.add_site("Thuis", owner="anna")
    holiday = portal.add_site("Vakantiehuis", owner="anna")
    await portal.sign_in(anna)
    await _set_address(portal, "anna", home, ADDRESS_A)
    await _set_address(portal, "anna", holiday, ADDRESS_B)

    portal.sql(
        "UPDATE sites s SET address_ciphertext = o.address_ciphertext FROM sites o "
        "WHERE (s.site_id, o.site_id) IN ((%s, %s), (%s, %s))",
        home,
        holiday,
        holiday,
        home,
    )

    for site_id, other in ((home, ADDRESS_B), (holiday, ADDRESS_A)):
        response = await portal.client.get(f"/api/v1/sites/{site_id}/address", headers=anna.headers)
        assert response.headers["content-type"] == "application/problem+json"
        _assert_refused_without_leak(response.text, response.status_code, other["street"], "sites.address")


async def test_an_email_moved_with_its_key_id_to_another_account_does_not_open(portal: Portal):
    # The attacker moves Bob's sealed email *and* the id of the key that opens it into Anna's row.
    anna = portal.add_person("anna", "owner", email="anna@example.org")
    portal.add_person("bob", "owner", email="bob@example.org")
    await portal.sign_in(anna)
    # key_id is unique: the two rows swap their (key id, sealed email) pairs through a spare key id.
    bob_key, bob_email = portal.sql("SELECT key_id, email_ciphertext FROM users WHERE username = 'bob'")[0]
    anna_key, anna_email = portal.sql("SELECT key_id, email_ciphertext FROM users WHERE username = 'anna'")[0]
    spare = portal.sql(
        "INSERT INTO subject_keys (scope, master_key_id, wrapped_key) "
        "VALUES ('account', 'spare', '\\x00') RETURNING key_id"
    )[0][0]
    portal.sql("UPDATE users SET key_id = %s WHERE username = 'bob'", spare)
    portal.sql(
        "UPDATE users SET key_id = %s, email_ciphertext = %s WHERE username = 'anna'", bob_key, bob_email
    )
    portal.sql(
        "UPDATE users SET key_id = %s, email_ciphertext = %s WHERE username = 'bob'", anna_key, anna_email
    )

    response = await portal.client.get("/api/v1/account", headers=anna.headers)
    assert response.headers["content-type"] == "application/problem+json"
    _assert_refused_without_leak(response.text, response.status_code, "bob@example.org", "users.email")


async def test_a_key_id_swapped_between_two_homes_does_not_open_the_other_address(portal: Portal):
    # Two owners; the attacker gives Anna's home Bob's home's sealed address and key id.
    anna = portal.add_person("anna", "owner")
    bob = portal.add_person("bob", "owner")
    home_a = portal.add_site("Anna thuis", owner="anna")
    home_b = portal.add_site("Bob thuis", owner="bob")
    await portal.sign_in(anna)
    await portal.sign_in(bob)
    await _set_address(portal, "anna", home_a, ADDRESS_A)
    await _set_address(portal, "bob", home_b, ADDRESS_B)

    portal.sql(
        "UPDATE sites s SET address_key_id = o.address_key_id, address_ciphertext = o.address_ciphertext "
        "FROM sites o WHERE (s.site_id, o.site_id) IN ((%s, %s), (%s, %s))",
        home_a,
        home_b,
        home_b,
        home_a,
    )

    response = await portal.client.get(f"/api/v1/sites/{home_a}/address", headers=anna.headers)
    _assert_refused_without_leak(response.text, response.status_code, "Dorpsstraat", "sites.address")
    # Only the key id swapped, the value left: it does not open with the other key either.
    portal.sql(
        "UPDATE sites s SET address_key_id = o.address_key_id FROM sites o "
        "WHERE (s.site_id, o.site_id) IN ((%s, %s), (%s, %s))",
        home_a,
        home_b,
        home_b,
        home_a,
    )
    response = await portal.client.get(f"/api/v1/sites/{home_b}/address", headers=bob.headers)
    _assert_refused_without_leak(response.text, response.status_code, "Keizersgracht", "sites.address")


async def test_an_email_moved_into_the_totp_column_does_not_open_and_the_portal_keeps_serving(
    portal: Portal,
):
    ilse = portal.add_person("ilse", "installer", company="Warmte BV", email="ilse@warmte.example")
    anna = portal.add_person("anna", "owner", email="anna@example.org")
    await portal.sign_in(anna)
    # Anna's email becomes her TOTP secret, and she is given two factors: her sign-in must open it.
    portal.sql(
        "UPDATE users SET totp_secret_ciphertext = email_ciphertext, totp_confirmed_at = now() "
        "WHERE username = 'anna'"
    )
    response = await portal.client.post(
        "/api/v1/auth/sign-in",
        json={"username": "anna", "password": anna.password, "totp_code": "123456"},
    )
    _assert_refused_without_leak(response.text, response.status_code, "anna@example.org", "users.totp_secret")
    # Others are served as before.
    assert (await portal.sign_in(ilse)).status_code == 200


async def _ask_for_address(portal: Portal, person: Person, email: str) -> None:
    response = await portal.client.put(
        "/api/v1/account/email",
        headers=person.headers,
        json={"email": email, "current_password": person.password},
    )
    assert response.status_code in (200, 202), response.text


async def test_an_address_awaiting_its_link_moved_into_the_confirmed_column_does_not_open(portal: Portal):
    # Anna asks for a stranger's address; it waits in email_changes for the link sent to it. The attacker
    # copies the sealed pending address over her confirmed one: same account, same key and key id, same
    # row key (email_changes is keyed by the account's id), so only table and column tell them apart.
    anna = portal.add_person("anna", "owner", email="anna@example.org")
    await portal.sign_in(anna)
    await _ask_for_address(portal, anna, STRANGER)
    portal.sql(
        "UPDATE users u SET email_ciphertext = c.email_ciphertext FROM email_changes c "
        "WHERE c.user_id = u.user_id AND u.username = 'anna'"
    )

    response = await portal.client.get("/api/v1/account", headers=anna.headers)
    assert response.headers["content-type"] == "application/problem+json"
    _assert_refused_without_leak(response.text, response.status_code, STRANGER, "users.email")


async def test_a_confirmation_link_swapped_into_the_notice_to_the_accounts_own_address_is_never_sent(
    portal: Portal,
):
    # Mallory asks for a stranger's address: the confirmation link is queued for the stranger and a notice
    # for her own address, both sealed with her key. Writing the database, she swaps the two messages, so
    # that the link would come to her and she could confirm an address that is not hers. Each message is
    # bound to its own outbox row: neither opens, and the sender gives both up unsent.
    mallory = portal.add_person("mallory", "owner", email="mallory@example.org")
    await portal.sign_in(mallory)
    await _ask_for_address(portal, mallory, STRANGER)
    # The SMTP server is down (a closed port): both wait, tried once, until their next attempt seconds away.
    for _ in range(200):
        rows = portal.sql("SELECT message_id, kind, last_error FROM mail_outbox ORDER BY message_id")
        if len(rows) == 2 and all(error is not None for _, _, error in rows):
            break
        await asyncio.sleep(0.05)
    assert sorted(kind for _, kind, _ in rows) == ["email_confirmation", "email_requested"]
    (first, _, _), (second, _, _) = rows
    portal.sql(
        "UPDATE mail_outbox m SET message_ciphertext = o.message_ciphertext, next_attempt_at = now() "
        "FROM mail_outbox o WHERE (m.message_id, o.message_id) IN ((%s, %s), (%s, %s))",
        first,
        second,
        second,
        first,
    )

    assert portal.app is not None
    assert await portal.app.state.outbox.send_due() == 0
    assert portal.sql("SELECT next_attempt_at, last_error FROM mail_outbox ORDER BY message_id") == [
        (None, "cannot be opened"),
        (None, "cannot be opened"),
    ]
