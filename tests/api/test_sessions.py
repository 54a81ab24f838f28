"""Sessions: listed, ended at once, all ended by a password change; cookies need their CSRF token."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from api.security import PLAIN_COOKIE, csrf_token, token_hash
from api.services.signin import sign_in
from tests.fixtures.database import Database
from tests.fixtures.portal import Portal, running_portal


@pytest.fixture
async def portal(database: Database) -> AsyncIterator[Portal]:
    async with running_portal(database) as p:
        yield p


async def test_an_ended_session_is_refused_at_once(portal: Portal):
    anna = portal.add_person("anna", "owner")
    await portal.sign_in(anna)
    laptop = dict(anna.headers)
    await portal.sign_in(anna)
    phone = dict(anna.headers)
    listed = await portal.client.get("/api/v1/account/sessions", headers=phone)
    sessions = listed.json()
    assert len(sessions) == 2
    assert [s["current"] for s in sessions].count(True) == 1
    assert {s["ip"] for s in sessions} == {"192.0.2.10"}
    laptop_id = next(s["session_id"] for s in sessions if not s["current"])
    assert (
        await portal.client.delete(f"/api/v1/account/sessions/{laptop_id}", headers=phone)
    ).status_code == 204
    refused = await portal.client.get("/api/v1/account", headers=laptop)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == "Bearer"
    assert (await portal.client.get("/api/v1/account", headers=phone)).status_code == 200
    # Signing out everywhere ends this one too.
    assert (await portal.client.delete("/api/v1/account/sessions", headers=phone)).status_code == 204
    assert (await portal.client.get("/api/v1/account", headers=phone)).status_code == 401
    assert portal.sql("SELECT count(*) FROM sessions") == [(0,)]


async def test_a_password_change_signs_out_every_other_session(portal: Portal):
    anna = portal.add_person("anna", "owner")
    await portal.sign_in(anna)
    other = dict(anna.headers)
    await portal.sign_in(anna)
    wrong = await portal.client.post(
        "/api/v1/account/password",
        headers=anna.headers,
        json={"current_password": "not it", "new_password": "a much longer new secret"},
    )
    assert (wrong.status_code, wrong.json()["detail"]) == (
        403,
        "body field current_password: the current password is wrong",
    )
    short = await portal.client.post(
        "/api/v1/account/password",
        headers=anna.headers,
        json={"current_password": anna.password, "new_password": "short"},
    )
    assert (short.status_code, short.json()["detail"]) == (
        422,
        "body field new_password: the password must be at least 12 characters long",
    )
    changed = await portal.client.post(
        "/api/v1/account/password",
        headers=anna.headers,
        json={"current_password": anna.password, "new_password": "a much longer new secret"},
    )
    assert changed.status_code == 204
    assert (await portal.client.get("/api/v1/account", headers=other)).status_code == 401
    assert (await portal.client.get("/api/v1/account", headers=anna.headers)).status_code == 200
    anna.password = "a much longer new secret"
    assert (await portal.sign_in(anna)).status_code == 200


async def test_an_expired_session_or_a_closed_account_signs_no_one_in(portal: Portal):
    anna = portal.add_person("anna", "owner")
    await portal.sign_in(anna)
    portal.sql("UPDATE sessions SET expires_at = now() - interval '1 second'")
    assert (await portal.client.get("/api/v1/account", headers=anna.headers)).status_code == 401
    await portal.sign_in(anna)
    portal.sql("UPDATE contracts SET ended_at = now()")  # the contract ends: its accounts close
    assert (await portal.client.get("/api/v1/account", headers=anna.headers)).status_code == 401
    assert (await portal.sign_in(anna)).status_code == 401


async def test_using_a_session_moves_its_end_forward_up_to_the_absolute_limit(portal: Portal):
    anna = portal.add_person("anna", "owner")
    await portal.sign_in(anna)
    portal.sql(
        "UPDATE sessions SET last_used_at = now() - interval '10 minutes', "
        "expires_at = now() + interval '1 hour'"
    )
    await portal.client.get("/api/v1/account", headers=anna.headers)
    ((remaining,),) = portal.sql("SELECT extract(epoch FROM expires_at - now()) FROM sessions")
    assert remaining > 29 * 24 * 3600  # an API token's idle period is 30 days
    portal.sql(
        "UPDATE sessions SET created_at = now() - interval '90 days' + interval '1 hour', "
        "last_used_at = now() - interval '10 minutes'"
    )
    await portal.client.get("/api/v1/account", headers=anna.headers)
    ((remaining,),) = portal.sql("SELECT extract(epoch FROM expires_at - now()) FROM sessions")
    assert 3500 < remaining <= 3600  # never past 90 days after sign-in


async def test_a_cookie_session_needs_its_csrf_token_to_change_anything(portal: Portal):
    anna = portal.add_person("anna", "owner")
    assert portal.app is not None
    session = await sign_in(
        portal.app.state.pool,
        portal.settings,
        keyring=portal.database.keyring,
        username="anna",
        password=anna.password,
        second_factor=None,
        kind="browser",
        ip="192.0.2.10",
        user_agent="test",
    )
    cookie = {"Cookie": f"{PLAIN_COOKIE}={session.token}"}
    body = {"language": "en", "time_zone": "Europe/Amsterdam"}
    read = await portal.client.get("/api/v1/account", headers=cookie)
    assert read.status_code == 200
    forged = await portal.client.put("/api/v1/account/preferences", headers=cookie, json=body)
    assert forged.status_code == 403
    assert "X-CSRF-Token" in forged.json()["detail"]
    wrong = await portal.client.put(
        "/api/v1/account/preferences", json=body, headers={**cookie, "X-CSRF-Token": "0" * 64}
    )
    assert wrong.status_code == 403
    token = csrf_token(portal.settings, token_hash(session.token))
    allowed = await portal.client.put(
        "/api/v1/account/preferences", json=body, headers={**cookie, "X-CSRF-Token": token}
    )
    assert allowed.status_code == 200
    assert portal.sql("SELECT language FROM display_preferences") == [("en",)]
    ((kind,),) = portal.sql("SELECT kind FROM sessions")
    assert kind == "browser"
