"""Personal fields at rest: sealed per data subject, unreadable in the database, rotated with no downtime."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from privacy.keys.crypto import (
    DecryptionError,
    FieldContext,
    KeyringError,
    KeyringFile,
    new_data_key,
    new_keyring,
    open_json,
    open_sealed,
    parse_keyring,
    seal,
    seal_json,
    with_new_master_key,
    without_master_key,
    write_keyring,
)
from privacy.keys.fields import CONTRACTS_HOLDER, SEALED_COLUMNS, USERS_EMAIL, SealedColumn
from tests.fixtures.database import Database
from tests.fixtures.mail import MailServer, confirmation_token
from tests.fixtures.portal import Portal, running_portal

KEY = new_data_key()


EMAIL_OF_12 = USERS_EMAIL.at(12, 34)


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(max_size=300),
    column=st.sampled_from(SEALED_COLUMNS),
    row_key=st.integers(min_value=1, max_value=2**62),
    key_id=st.integers(min_value=1, max_value=2**62),
)
def test_a_sealed_field_opens_only_in_its_own_table_column_row_and_key_id(
    text: str, column: SealedColumn, row_key: int, key_id: int
):
    context = column.at(row_key, key_id)
    sealed = seal(KEY, text, context=context)
    assert open_sealed(KEY, sealed, context=context) == text
    # Never stored as is (a short text may turn up in random bytes by chance).
    assert text.encode() not in sealed or len(text.encode()) < 8
    other_column = next(c for c in SEALED_COLUMNS if c != column)
    for elsewhere in (
        column.at(row_key + 1, key_id),  # another row of the same column
        column.at(row_key, key_id + 1),  # another key id
        other_column.at(row_key, key_id),  # another column
        FieldContext(column.table + "_copy", column.name, row_key, key_id),  # another table
    ):
        with pytest.raises(DecryptionError, match=re.escape(f"{elsewhere} does not open")):
            open_sealed(KEY, sealed, context=elsewhere)
    with pytest.raises(DecryptionError):
        open_sealed(new_data_key(), sealed, context=context)
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(DecryptionError, match="was moved from another row or column, or altered"):
        open_sealed(KEY, tampered, context=context)


def test_a_value_of_the_old_format_bound_to_its_column_only_is_refused():
    # Format 1 authenticated "users.email" alone, so it opened in any row: it is no longer accepted.
    nonce = bytes(12)
    old = b"\x01" + nonce + AESGCM(KEY).encrypt(nonce, b"anna@example.org", b"users.email")
    with pytest.raises(DecryptionError, match=r"not sealed in format 2.*format 1 bound the column only"):
        open_sealed(KEY, old, context=EMAIL_OF_12)


def test_sealing_the_same_value_twice_gives_different_ciphertext():
    # A fresh nonce each time: equal emails cannot be told apart in the table (the keyed hash is for that).
    assert seal(KEY, "anna@example.org", context=EMAIL_OF_12) != seal(
        KEY, "anna@example.org", context=EMAIL_OF_12
    )
    document = {"holder_name": "A. de Vries", "bank_account": "NL91ABNA0417164300"}
    context = CONTRACTS_HOLDER.at(1, 2)
    assert open_json(KEY, seal_json(KEY, document, context=context), context=context) == document


def test_a_data_key_unwraps_only_with_the_master_key_and_scope_it_was_wrapped_under():
    keyring = new_keyring("m1")
    master_id, wrapped = keyring.wrap(KEY, scope="account")
    assert keyring.unwrap(master_id, wrapped, scope="account") == KEY
    with pytest.raises(DecryptionError):
        keyring.unwrap(master_id, wrapped, scope="billing")
    rotated = with_new_master_key(keyring, "m2")
    assert rotated.current == "m2"
    assert rotated.unwrap(master_id, wrapped, scope="account") == KEY  # the old one still opens
    retired = without_master_key(rotated, "m1")
    with pytest.raises(KeyringError, match="wrapped by master key 'm1', which the keyring no longer holds"):
        retired.unwrap(master_id, wrapped, scope="account")
    with pytest.raises(KeyringError, match="'m2' is the current master key"):
        without_master_key(rotated, "m2")


def test_the_email_hash_ignores_case_and_blanks_and_depends_on_the_index_key():
    keyring = new_keyring("m1")
    assert keyring.email_hash(" Anna@Example.org ") == keyring.email_hash("anna@example.org")
    assert keyring.email_hash("anna@example.org") != new_keyring("m1").email_hash("anna@example.org")
    # Rotating the master key leaves the index key, so accounts are still found by their email.
    assert with_new_master_key(keyring, "m2").email_hash("a@b.nl") == keyring.email_hash("a@b.nl")


def test_the_keyring_file_is_private_and_read_again_when_it_changes(tmp_path: Path):
    path = tmp_path / "keyring.toml"
    write_keyring(path, new_keyring("m1"))
    assert path.stat().st_mode & 0o777 == 0o600
    keyring_file = KeyringFile(path)
    assert keyring_file.get().current == "m1"
    write_keyring(path, with_new_master_key(keyring_file.get(), "m2"))
    assert keyring_file.get().current == "m2"
    path.write_text("current = 'm9'\n")
    with pytest.raises(KeyringError, match="the keyring is not valid"):
        keyring_file.get()
    with pytest.raises(KeyringError, match="cannot read the keyring"):
        KeyringFile(tmp_path / "missing.toml").get()


def every_row_as_text(database: Database) -> str:
    """Return every row of every table of the database as text, bytea as hex."""
    with psycopg.connect(database.owner_url) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
            )
        ]
        return "\n".join(
            str(row[0])
            for table in tables
            for row in conn.execute(f"SELECT t::text FROM {table} t")  # noqa: S608 - names from pg_tables
        )


async def test_no_table_holds_a_name_email_address_or_totp_secret_in_the_clear(database: Database):
    async with running_portal(database) as portal:
        anna = portal.add_person(
            "anna", "owner", email="anna.devries@example.org", holder_name="Anna de Vries"
        )
        ilse = portal.add_person("ilse", "installer", company="Warmte BV", email="ilse@warmte.example")
        site = portal.add_site("Huize Anna", owner="anna")
        await portal.sign_in(anna)
        address = {
            "street": "Keizersgracht",
            "house_number": "123",
            "postcode": "1015 CJ",
            "city": "Amsterdam",
        }
        response = await portal.client.put(
            f"/api/v1/sites/{site}/address",
            json={**address, "latitude": 52.3731, "longitude": 4.8922},
            headers=anna.headers,
        )
        assert response.status_code == 200, response.text
        assert response.json()["postcode_area"] == "1015"
        assert response.json()["h3_cell"].startswith("87")
        account = await portal.client.get("/api/v1/account", headers=anna.headers)
        assert account.json()["email"] == "anna.devries@example.org"
        read_back = await portal.client.get(f"/api/v1/sites/{site}/address", headers=anna.headers)
        assert read_back.json() | address == read_back.json()
    everything = every_row_as_text(database)
    assert ilse.account.totp_secret is not None
    for secret in (
        "anna.devries@example.org",
        "Anna de Vries",
        "ilse@warmte.example",
        ilse.account.totp_secret,
        "Keizersgracht",
        "1015 CJ",
        "1015CJ",
        "52.3731",
        "4.8922",
    ):
        assert secret not in everything, f"{secret!r} is stored in the clear"
    assert "1015" in everything  # the postcode area is kept in the clear, for coarse cells


@pytest.fixture
async def portal(database: Database) -> AsyncIterator[Portal]:
    async with running_portal(database) as p:
        yield p


async def test_an_email_address_can_be_changed_and_is_found_by_its_keyed_hash(
    database: Database, mail: MailServer
):
    async with running_portal(database, smtp_port=mail.port) as portal:
        anna = portal.add_person("anna", "owner")
        await portal.sign_in(anna)
        proof = {"current_password": anna.password}
        response = await portal.client.put(
            "/api/v1/account/email", json={"email": "Anna@Example.org", **proof}, headers=anna.headers
        )
        assert (response.status_code, response.json()["pending_email"]) == (202, "Anna@Example.org")
        # In force (and found by its hash) once the link sent to it is followed.
        [link] = await mail.wait_for("Anna@Example.org")
        confirmed = await portal.client.post(
            "/api/v1/account/email/confirm", json={"token": confirmation_token(link)}
        )
        assert confirmed.status_code == 204
        keyring = portal.database.keyring
        found = portal.sql(
            "SELECT username FROM users WHERE email_hash = %s", keyring.email_hash("anna@example.ORG")
        )
        assert found == [("anna",)]
        wrong = await portal.client.put(
            "/api/v1/account/email", json={"email": "not-an-address", **proof}, headers=anna.headers
        )
        assert wrong.status_code == 422
        assert wrong.headers["content-type"] == "application/problem+json"
        cleared = await portal.client.put(
            "/api/v1/account/email", json={"email": None, **proof}, headers=anna.headers
        )
        assert cleared.json()["email"] is None
        assert portal.sql("SELECT email_hash, email_ciphertext FROM users WHERE username = 'anna'") == [
            (None, None)
        ]


def keys_command(database: Database, *args: str) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "THUIS_KEYRING_FILE": str(database.keyring_file),
        "THUIS_DATABASE_URL": database.owner_url,
    }
    return subprocess.run(
        [sys.executable, "-m", "cli", "keys", *args, "--batch-size", "7"]
        if args[0] == "rotate"
        else [sys.executable, "-m", "cli", "keys", *args],
        capture_output=True,
        text=True,
        check=False,
        env=environment,
    )


@pytest.mark.slow
async def test_the_master_key_rotates_while_the_portal_serves(database: Database):
    async with running_portal(database) as portal:
        owners = [portal.add_person(f"owner-{n}", "owner", email=f"owner{n}@example.org") for n in range(30)]
        ilse = portal.add_person("ilse", "installer", company="Warmte BV")
        for owner in owners[:3]:
            await portal.sign_in(owner)

        async def keep_reading(stop: asyncio.Event) -> int:
            reads = 0
            while not stop.is_set():
                for n, owner in enumerate(owners[:3]):
                    response = await portal.client.get("/api/v1/account", headers=owner.headers)
                    assert (response.status_code, response.json()["email"]) == (200, f"owner{n}@example.org")
                    reads += 1
                await asyncio.sleep(0)
            return reads

        stop = asyncio.Event()
        reader = asyncio.create_task(keep_reading(stop))
        old = database.keyring.current
        added = await asyncio.to_thread(keys_command, database, "add-master", "--id", "test-2")
        assert added.returncode == 0, added.stderr
        # Accounts made from now on get data keys wrapped by the new master key at once.
        portal.add_person("late", "owner", email="late@example.org")
        refused = await asyncio.to_thread(keys_command, database, "retire", old)
        assert refused.returncode == 1
        assert f"data keys are still wrapped by {old}; run `thuis keys rotate`" in refused.stderr
        rotated = await asyncio.to_thread(keys_command, database, "rotate")
        assert rotated.returncode == 0, rotated.stderr
        assert "re-wrapped" in rotated.stdout
        retired = await asyncio.to_thread(keys_command, database, "retire", old)
        assert retired.returncode == 0, retired.stderr
        stop.set()
        assert await reader > 0
        assert set(database.keyring.master_keys) == {"test-2"}
        assert portal.sql("SELECT DISTINCT master_key_id FROM subject_keys") == [("test-2",)]
        # Everything still opens: emails, the installer's TOTP secret at sign-in, the late account.
        for n, owner in enumerate(owners):
            await portal.sign_in(owner)
            response = await portal.client.get("/api/v1/account", headers=owner.headers)
            assert response.json()["email"] == f"owner{n}@example.org"
        assert (await portal.sign_in(ilse)).status_code == 200
        status = await asyncio.to_thread(keys_command, database, "status")
        assert status.stdout.strip() == "test-2 (current): 63 data keys"  # 31 owners and contracts, ilse


def test_a_second_keyring_is_never_made_over_the_first(database: Database):
    before = database.keyring_file.read_text()
    again = keys_command(database, "init")
    assert again.returncode == 1
    assert "exists already" in again.stderr
    assert database.keyring_file.read_text() == before
    assert parse_keyring(before).current == "test-1"
