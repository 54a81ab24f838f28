"""A stolen session cannot lock the owner out: security changes need the password and the second factor again.

The thief holds a bearer token of the owner's and nothing else (or, where said, the password as well, but
not the authenticator). Every change that would let them keep the account (enrolling their own app, turning
two factors off, new recovery codes, another email address, another password) is refused; the owner's own
changes end every other session and are told to the owner's verified address, read back from a real SMTP
server.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import pyotp
import pytest

from api.security import PLAIN_COOKIE, csrf_token, token_hash
from api.services.credentials import new_recovery_codes, new_totp_secret
from api.services.signin import sign_in
from privacy.keys.crypto import seal
from privacy.keys.fields import USERS_TOTP_SECRET
from privacy.keys.subject_keys import load_key
from tests.fixtures.database import Database
from tests.fixtures.mail import MailServer, text_of
from tests.fixtures.portal import Person, Portal, running_portal
from tests.support import as_owner
from thuis.db import Connection

ANNA_EMAIL = "anna@example.org"
THIEF_EMAIL = "thief@example.net"
NEW_PASSWORD = "a much longer new secret"


@pytest.fixture
async def portal(database: Database, mail: MailServer) -> AsyncIterator[Portal]:
    async with running_portal(database, smtp_port=mail.port) as p:
        yield p


def code_after(secret: str, steps: int = 1) -> str:
    """Return the code of a later time step (accepted within one step of drift), unused so far."""
    return pyotp.TOTP(secret).at(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30 * steps))


async def enable_totp(portal: Portal, person: Person) -> tuple[str, list[str]]:
    """Turn two factors on for a person as they would themselves; return the secret and recovery codes."""
    started = await portal.client.post(
        "/api/v1/account/totp", headers=person.headers, json={"current_password": person.password}
    )
    assert started.status_code == 200, started.text
    secret = started.json()["secret"]
    confirmed = await portal.client.post(
        "/api/v1/account/totp/confirm",
        headers=person.headers,
        json={"current_password": person.password, "totp_code": pyotp.TOTP(secret).now()},
    )
    assert confirmed.status_code == 200, confirmed.text
    return secret, confirmed.json()["recovery_codes"]


def give_totp(portal: Portal, username: str) -> tuple[str, list[str]]:
    """Store two factors for an account as if set up long ago, past the API under attack."""
    secret = new_totp_secret()
    codes, hashes = new_recovery_codes()

    async def store(conn: Connection) -> None:
        row = await conn.fetchrow("SELECT user_id, key_id FROM users WHERE username = $1", username)
        user_id, key_id = row["user_id"], row["key_id"]
        key = await load_key(conn, portal.database.keyring, key_id)
        await conn.execute(
            "UPDATE users SET totp_secret_ciphertext = $2, totp_confirmed_at = now(), "
            "recovery_code_hashes = $3 WHERE username = $1",
            username,
            seal(key, secret, context=USERS_TOTP_SECRET.at(user_id, key_id)),
            hashes,
        )

    as_owner(portal.database.owner_url, store)
    return secret, codes


def totp_state(portal: Portal) -> tuple[bool, bool, int]:
    ((secret_set, confirmed, codes),) = portal.sql(
        "SELECT totp_secret_ciphertext IS NOT NULL, totp_confirmed_at IS NOT NULL, "
        "cardinality(recovery_code_hashes) FROM users WHERE username = 'anna'"
    )
    return secret_set, confirmed, codes


async def test_a_thief_with_only_a_token_cannot_enrol_their_own_authenticator(
    portal: Portal, mail: MailServer
):
    anna = portal.add_person("anna", "owner", email=ANNA_EMAIL)
    await portal.sign_in(anna)
    stolen = dict(anna.headers)
    for body in ({}, {"current_password": "a guess of the thief"}):
        started = await portal.client.post("/api/v1/account/totp", headers=stolen, json=body)
        assert started.status_code in (403, 422), started.text
        assert started.headers["content-type"] == "application/problem+json"
        if started.status_code == 200:  # the old portal: the thief's app would be enrolled
            secret = started.json()["secret"]
            await portal.client.post(
                "/api/v1/account/totp/confirm", headers=stolen, json={"totp_code": pyotp.TOTP(secret).now()}
            )
    assert totp_state(portal) == (False, False, 0)
    # The owner still signs in with her password alone.
    assert (await portal.sign_in(anna)).status_code == 200


async def test_a_thief_cannot_turn_two_factors_off_or_renew_the_codes_even_with_the_password(portal: Portal):
    anna = portal.add_person("anna", "owner", email=ANNA_EMAIL)
    secret, codes = give_totp(portal, "anna")
    await portal.sign_in(anna, totp_code=pyotp.TOTP(secret).now())
    stolen = dict(anna.headers)
    for body in (
        {},
        {"current_password": anna.password},
        {"current_password": anna.password, "totp_code": "123456"},
    ):
        for method, path in (
            ("DELETE", "/api/v1/account/totp"),
            ("POST", "/api/v1/account/totp/disable"),
            ("POST", "/api/v1/account/recovery-codes"),
        ):
            response = await portal.client.request(method, path, headers=stolen, json=body)
            assert response.status_code in (403, 405, 422), (method, path, body, response.text)
    assert totp_state(portal) == (True, True, 10)
    # The owner's own codes still work: her next sign-in with a recovery code does.
    assert (await portal.sign_in(anna, totp_code=codes[0])).status_code == 200


async def test_a_thief_cannot_change_the_email_or_the_password(portal: Portal, mail: MailServer):
    anna = portal.add_person("anna", "owner", email=ANNA_EMAIL)
    secret, _ = give_totp(portal, "anna")
    await portal.sign_in(anna, totp_code=pyotp.TOTP(secret).now())
    stolen = dict(anna.headers)
    attempts = [
        ("PUT", "/api/v1/account/email", {"email": THIEF_EMAIL}),
        ("PUT", "/api/v1/account/email", {"email": THIEF_EMAIL, "current_password": anna.password}),
        (
            "POST",
            "/api/v1/account/password",
            {"current_password": anna.password, "new_password": NEW_PASSWORD},
        ),
        (
            "POST",
            "/api/v1/account/password",
            {"current_password": anna.password, "new_password": NEW_PASSWORD, "totp_code": "000000"},
        ),
    ]
    for method, path, body in attempts:
        response = await portal.client.request(method, path, headers=stolen, json=body)
        assert response.status_code in (403, 422), (path, body, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    me = await portal.client.get("/api/v1/account", headers=stolen)
    assert me.json()["email"] == ANNA_EMAIL
    assert mail.to(THIEF_EMAIL) == []
    anna_with_code = await portal.client.post(
        "/api/v1/auth/sign-in",
        json={"username": "anna", "password": anna.password, "totp_code": code_after(secret)},
    )
    assert anna_with_code.status_code == 200  # the password is still hers


async def test_guessing_the_password_through_a_stolen_session_is_throttled(portal: Portal):
    anna = portal.add_person("anna", "owner", email=ANNA_EMAIL)
    await portal.sign_in(anna)
    statuses = []
    for guess in range(12):
        response = await portal.client.post(
            "/api/v1/account/password",
            headers=anna.headers,
            json={"current_password": f"guess number {guess}", "new_password": NEW_PASSWORD},
        )
        statuses.append(response.status_code)
    assert statuses[:5] == [403] * 5
    assert statuses[-1] == 429
    assert set(statuses) == {403, 429}


CHANGES = ["password", "totp-on", "totp-off", "recovery-codes", "email"]


@pytest.mark.parametrize("change", CHANGES)
async def test_a_security_change_ends_the_other_sessions_and_is_told_to_the_verified_address(
    portal: Portal, mail: MailServer, change: str
):
    anna = portal.add_person("anna", "owner", email=ANNA_EMAIL)
    await portal.sign_in(anna)
    secret, codes = None, ["", ""]
    if change in ("totp-off", "recovery-codes"):
        secret, codes = await enable_totp(portal, anna)  # its first code is the one of this time step
    assert (await portal.sign_in(anna, **({"totp_code": codes[0]} if secret else {}))).status_code == 200
    laptop = dict(anna.headers)
    assert (await portal.sign_in(anna, **({"totp_code": codes[1]} if secret else {}))).status_code == 200
    phone = dict(anna.headers)
    mail.clear()
    proof = {"current_password": anna.password}
    if secret:
        proof["totp_code"] = code_after(secret)
    if change == "password":
        response = await portal.client.post(
            "/api/v1/account/password", headers=phone, json={**proof, "new_password": NEW_PASSWORD}
        )
        subject = "password"
    elif change == "totp-on":
        started = await portal.client.post("/api/v1/account/totp", headers=phone, json=proof)
        assert started.status_code == 200, started.text
        response = await portal.client.post(
            "/api/v1/account/totp/confirm",
            headers=phone,
            json={**proof, "totp_code": pyotp.TOTP(started.json()["secret"]).now()},
        )
        subject = "two-factor authentication"
    elif change == "totp-off":
        response = await portal.client.post("/api/v1/account/totp/disable", headers=phone, json=proof)
        subject = "two-factor authentication"
    elif change == "recovery-codes":
        response = await portal.client.post("/api/v1/account/recovery-codes", headers=phone, json=proof)
        subject = "recovery codes"
    else:
        response = await portal.client.put(
            "/api/v1/account/email", headers=phone, json={**proof, "email": "anna@elsewhere.example"}
        )
        subject = "email"
    assert response.status_code in (200, 202, 204), response.text
    assert (await portal.client.get("/api/v1/account", headers=laptop)).status_code == 401
    assert (await portal.client.get("/api/v1/account", headers=phone)).status_code == 200
    [notice] = await mail.wait_for(ANNA_EMAIL)
    assert subject in str(notice["Subject"]).lower()
    body = text_of(notice)
    assert "192.0.2.10" in body  # from where it was done
    assert anna.password not in body
    if secret:
        assert secret not in body


async def test_the_account_page_asks_for_the_password_and_tells_the_address(portal: Portal, mail: MailServer):
    anna = portal.add_person("anna", "owner", email=ANNA_EMAIL)
    assert portal.app is not None
    browser = await sign_in(
        portal.app.state.pool,
        portal.settings,
        keyring=portal.database.keyring,
        username="anna",
        password=anna.password,
        second_factor=None,
        kind="browser",
        ip="192.0.2.10",
        user_agent="a browser",
    )
    await portal.sign_in(anna)  # and an API client elsewhere
    cookie = {"Cookie": f"{PLAIN_COOKIE}={browser.token}", "User-Agent": "a browser"}
    csrf = csrf_token(portal.settings, token_hash(browser.token))
    shown = await portal.client.get("/account", headers=cookie)
    assert shown.status_code == 200
    assert ANNA_EMAIL in shown.text
    assert 'name="current_password"' in shown.text
    forged = await portal.client.post(
        "/account/password",
        headers=cookie,
        data={"current_password": anna.password, "new_password": NEW_PASSWORD},
    )
    assert forged.status_code == 403  # no CSRF token: another site's form
    wrong = await portal.client.post(
        "/account/password",
        headers=cookie,
        data={"csrf_token": csrf, "current_password": "not it", "new_password": NEW_PASSWORD},
    )
    assert wrong.status_code == 403
    assert "the current password is wrong" in wrong.text
    changed = await portal.client.post(
        "/account/password",
        headers=cookie,
        data={"csrf_token": csrf, "current_password": anna.password, "new_password": NEW_PASSWORD},
    )
    assert changed.status_code == 200
    assert "Your password was changed" in changed.text
    assert (await portal.client.get("/api/v1/account", headers=anna.headers)).status_code == 401
    [notice] = await mail.wait_for(ANNA_EMAIL)
    assert "a browser" in text_of(notice)
    asked = await portal.client.post(
        "/account/email",
        headers=cookie,
        data={"csrf_token": csrf, "current_password": NEW_PASSWORD, "email": "anna@elsewhere.example"},
    )
    assert asked.status_code == 200
    assert "Waiting for confirmation: anna@elsewhere.example" in asked.text
    await mail.wait_for("anna@elsewhere.example")


async def test_past_the_limit_only_the_password_with_an_unused_factor_passes(portal: Portal):
    ilse = portal.add_person("ilse", "installer", company="Warmte BV")
    await portal.sign_in(ilse)
    assert ilse.account.totp_secret is not None
    renew = "/api/v1/account/recovery-codes"
    for guess in range(5):
        body = {"current_password": f"guess {guess}", "totp_code": "000000"}
        assert (await portal.client.post(renew, headers=ilse.headers, json=body)).status_code == 403
    # Over the limit: one holding the authenticator but guessing the password uses the code up.
    code = code_after(ilse.account.totp_secret)
    wrong = await portal.client.post(
        renew, headers=ilse.headers, json={"current_password": "x", "totp_code": code}
    )
    assert wrong.status_code == 429
    again = {"current_password": ilse.password, "totp_code": code}
    assert (await portal.client.post(renew, headers=ilse.headers, json=again)).status_code == 429
    # Ilse herself, with her password and an unused factor, gets through at once.
    mine = {"current_password": ilse.password, "totp_code": ilse.account.recovery_codes[0]}
    renewed = await portal.client.post(renew, headers=ilse.headers, json=mine)
    assert renewed.status_code == 200, renewed.text
    outcomes = portal.sql(
        "SELECT outcome, count(*) FROM login_events WHERE starts_with(outcome, 'recheck') GROUP BY 1"
    )
    assert sorted(outcomes) == [("recheck_throttled", 2), ("recheck_wrong_password", 5)]
