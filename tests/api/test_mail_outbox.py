"""Mail is not lost while the SMTP server is down: it waits in the outbox, sealed, until it is back."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.fixtures.database import Database
from tests.fixtures.mail import MailServer, text_of
from tests.fixtures.portal import running_portal

ANNA_EMAIL = "anna@example.org"
NEW_PASSWORD = "a much longer new secret"


async def test_mail_waits_in_the_outbox_while_the_smtp_server_is_down(
    database: Database, own_smtp_server: MailServer, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    async with running_portal(
        database, smtp_port=own_smtp_server.port, mail_retry_initial_s=0.2, mail_retry_max_s=0.5
    ) as portal:
        anna = portal.add_person("anna", "owner", email=ANNA_EMAIL)
        await portal.sign_in(anna)
        changed = await portal.client.post(
            "/api/v1/account/password",
            headers=anna.headers,
            json={"current_password": anna.password, "new_password": NEW_PASSWORD},
        )
        assert changed.status_code == 204, changed.text
        # The server is down: the notice stays in the outbox, sealed, and is tried again.
        for _ in range(100):
            ((waiting, attempts),) = portal.sql(
                "SELECT count(*), coalesce(max(attempts), 0) FROM mail_outbox"
            )
            if attempts >= 2:
                break
            await asyncio.sleep(0.05)
        assert (waiting, attempts >= 2) == (1, True)
        ((sealed,),) = portal.sql("SELECT message_ciphertext FROM mail_outbox")
        assert ANNA_EMAIL.encode() not in bytes(sealed)
        assert b"password" not in bytes(sealed)
        own_smtp_server.start()
        [notice] = await own_smtp_server.wait_for(ANNA_EMAIL)
        assert "password" in str(notice["Subject"]).lower()
        assert "192.0.2.10" in text_of(notice)
        for _ in range(100):
            if portal.sql("SELECT count(*) FROM mail_outbox") == [(0,)]:
                break
            await asyncio.sleep(0.05)
        assert portal.sql("SELECT count(*) FROM mail_outbox") == [(0,)]
    # The log tells an operator what happened, never to whom or what.
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "could not be sent" in logged
    assert ANNA_EMAIL not in logged
    assert NEW_PASSWORD not in logged
    assert anna.password not in logged


async def test_a_change_and_its_mail_are_one_transaction(database: Database, mail: MailServer):
    async with running_portal(database, smtp_port=mail.port) as portal:
        anna = portal.add_person("anna", "owner", email=ANNA_EMAIL)
        await portal.sign_in(anna)
        # A refused change writes no mail: the new password is too short, nothing is in the outbox.
        refused = await portal.client.post(
            "/api/v1/account/password",
            headers=anna.headers,
            json={"current_password": anna.password, "new_password": "short"},
        )
        assert refused.status_code == 422
        assert portal.sql("SELECT count(*) FROM mail_outbox") == [(0,)]
        await asyncio.sleep(0.3)
        assert mail.to(ANNA_EMAIL) == []
