"""Signing in: argon2id passwords, TOTP, recovery codes, login events, limits on failures."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pyotp
import pytest

from tests.fixtures.database import Database
from tests.fixtures.portal import Portal, running_portal

PROBLEM = "application/problem+json"


@pytest.fixture
async def portal(database: Database) -> AsyncIterator[Portal]:
    async with running_portal(database, sign_in_burst=3, sign_in_refill_s=600) as p:
        yield p


async def test_an_owner_signs_in_with_a_password_and_gets_a_bearer_token(portal: Portal):
    anna = portal.add_person("anna", "owner")
    response = await portal.sign_in(anna)
    assert response.status_code == 200, response.text
    me = await portal.client.get("/api/v1/account", headers=anna.headers)
    assert me.status_code == 200
    assert (me.json()["username"], me.json()["role"], me.json()["totp_enabled"]) == ("anna", "owner", False)
    stored = portal.sql("SELECT password_hash FROM users WHERE username = 'anna'")[0][0]
    assert stored.startswith("$argon2id$")
    assert anna.password not in stored


async def test_a_wrong_password_and_an_unknown_user_get_the_same_answer_and_are_login_events(portal: Portal):
    anna = portal.add_person("anna", "owner")
    wrong = await portal.client.post("/api/v1/auth/sign-in", json={"username": "anna", "password": "nope"})
    unknown = await portal.client.post("/api/v1/auth/sign-in", json={"username": "bert", "password": "nope"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.headers["content-type"] == unknown.headers["content-type"] == PROBLEM
    assert wrong.json()["detail"] == unknown.json()["detail"] == "the username or password is wrong"
    assert (await portal.sign_in(anna)).status_code == 200
    events = portal.sql("SELECT username, host(ip), outcome FROM login_events ORDER BY occurred_at")
    assert events == [
        ("anna", "192.0.2.10", "wrong_password"),
        ("bert", "192.0.2.10", "unknown_user"),
        ("anna", "192.0.2.10", "success"),
    ]


async def test_repeated_failures_are_refused_for_a_while_and_never_lock_the_account(portal: Portal):
    anna = portal.add_person("anna", "owner")
    statuses = []
    for _ in range(5):
        response = await portal.client.post(
            "/api/v1/auth/sign-in", json={"username": "anna", "password": "x"}
        )
        statuses.append(response.status_code)
    assert statuses == [401, 401, 401, 429, 429]  # a burst of 3 (this portal's setting), then a wait
    refused = await portal.sign_in(anna)  # the right password waits too, from this address
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 600
    outcomes = [row[0] for row in portal.sql("SELECT outcome FROM login_events ORDER BY occurred_at")]
    assert outcomes == ["wrong_password"] * 3 + ["throttled"] * 3
    # Once a token is back, the right password lets in and her bucket starts full again.
    portal.sql("UPDATE sign_in_throttle SET occurred_at = occurred_at - interval '601 seconds'")
    assert (await portal.sign_in(anna)).status_code == 200
    assert portal.sql("SELECT count(*) FROM sign_in_throttle WHERE username = 'anna'") == [(0,)]


async def test_an_installer_needs_a_totp_code_that_cannot_be_replayed(portal: Portal):
    ilse = portal.add_person("ilse", "installer", company="Warmte BV")
    without = await portal.sign_in(ilse, totp_code=None)
    assert without.status_code == 401
    assert without.json()["type"] == "/problems/totp-required"
    code = ilse.code()
    assert (await portal.sign_in(ilse, totp_code=code)).status_code == 200
    replayed = await portal.sign_in(ilse, totp_code=code)
    assert replayed.status_code == 401
    assert replayed.json()["detail"] == "the code is wrong or was used already"


async def test_a_recovery_code_signs_in_once(portal: Portal):
    piet = portal.add_person("piet", "privacy_officer")
    code = piet.account.recovery_codes[0]
    assert (await portal.sign_in(piet, totp_code=code.upper())).status_code == 200
    assert (await portal.sign_in(piet, totp_code=code)).status_code == 401
    me = await portal.client.get("/api/v1/account", headers=piet.headers)
    assert me.json()["recovery_codes_left"] == 9


async def test_an_owner_can_turn_on_two_factor_authentication(portal: Portal):
    anna = portal.add_person("anna", "owner")
    await portal.sign_in(anna)
    proof = {"current_password": anna.password}
    setup = await portal.client.post("/api/v1/account/totp", headers=anna.headers, json=proof)
    assert setup.status_code == 200
    secret = setup.json()["secret"]
    assert setup.json()["otpauth_uri"].startswith("otpauth://totp/Thuis:anna?secret=")
    wrong = await portal.client.post(
        "/api/v1/account/totp/confirm", headers=anna.headers, json={**proof, "totp_code": "000000"}
    )
    assert wrong.status_code == 422
    confirmed = await portal.client.post(
        "/api/v1/account/totp/confirm",
        headers=anna.headers,
        json={**proof, "totp_code": pyotp.TOTP(secret).now()},
    )
    assert confirmed.status_code == 200
    assert len(confirmed.json()["recovery_codes"]) == 10
    again = await portal.client.post(
        "/api/v1/auth/sign-in", json={"username": "anna", "password": anna.password}
    )
    assert again.json()["type"] == "/problems/totp-required"


async def test_installers_cannot_turn_two_factor_authentication_off(portal: Portal):
    ilse = portal.add_person("ilse", "installer", company="Warmte BV")
    await portal.sign_in(ilse)
    response = await portal.client.post(
        "/api/v1/account/totp/disable",
        headers=ilse.headers,
        json={"current_password": ilse.password, "totp_code": ilse.code()},
    )
    assert response.status_code == 403
    assert response.json()["detail"] == "an installer must sign in with two factors"
