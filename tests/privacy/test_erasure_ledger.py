"""The erasure ledger: written before an erasure commits, kept like the keyring, checked by every service."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from ops.accounts import create_account, set_site_owner
from privacy.keys.ledger import (
    ErasureEntry,
    ErasureLedger,
    ErasuresNotApplied,
    LedgerError,
    require_erasures_applied,
)
from privacy.subjects.erasure import erase_subject, reapply_erasures
from tests.fixtures.database import Database
from thuis.catalogue import load_catalogue

EMAIL = "ledger.subject@example.org"


@pytest.fixture
async def owner_conn(database: Database) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database.owner_url)
    yield conn
    await conn.close()


async def new_subject(conn: asyncpg.Connection, database: Database, username: str) -> int:
    account = await create_account(
        conn,
        database.keyring,
        username=username,
        password="correct horse battery staple",
        role="owner",
        email=EMAIL,
        holder_name="Lea Ledger",
    )
    return account.user_id


def entry(user_id: int, *, created_at: dt.datetime | None = None) -> ErasureEntry:
    return ErasureEntry(
        entry_id=uuid.uuid4(),
        subject_user_id=user_id,
        subject_created_at=created_at,
        erased_at=dt.datetime.now(dt.UTC),
        keep_contracts_ended_after=None,
        keep_orders_after=None,
    )


async def test_an_erasure_is_on_disk_in_the_ledger_with_ids_only_and_the_file_is_private(
    database: Database, owner_conn: asyncpg.Connection
):
    ledger = ErasureLedger(database.erasure_ledger_file)
    user_id = await new_subject(owner_conn, database, "lea")
    created_at = await owner_conn.fetchval("SELECT created_at FROM users WHERE user_id = $1", user_id)
    api = await asyncpg.connect(database.api_url)  # as the portal erases
    try:
        await erase_subject(api, load_catalogue(), ledger, user_id=user_id)
        await require_erasures_applied(api, ledger, in_flight_wait_s=0)
    finally:
        await api.close()
    text = database.erasure_ledger_file.read_text()
    assert database.erasure_ledger_file.stat().st_mode & 0o777 == 0o600
    (line,) = text.splitlines()
    document = json.loads(line)
    assert document["subject_user_id"] == user_id
    assert dt.datetime.fromisoformat(document["subject_created_at"]) == created_at
    for personal in ("lea", EMAIL, "Lea Ledger"):
        assert personal not in text
    applied = await owner_conn.fetch("SELECT entry_id, applied_by FROM applied_erasures")
    assert [(str(row["entry_id"]), row["applied_by"]) for row in applied] == [
        (document["entry_id"], "erasure")
    ]


async def test_an_erasure_whose_ledger_cannot_be_written_is_not_done(
    database: Database, owner_conn: asyncpg.Connection, tmp_path: Path
):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the ledger's folder should be")
    user_id = await new_subject(owner_conn, database, "lea")
    with pytest.raises(LedgerError, match="cannot write the erasure ledger"):
        await erase_subject(
            owner_conn, load_catalogue(), ErasureLedger(blocked / "ledger.jsonl"), user_id=user_id
        )
    assert await owner_conn.fetchval("SELECT count(*) FROM users WHERE user_id = $1", user_id) == 1
    assert await owner_conn.fetchval("SELECT count(*) FROM applied_erasures") == 0


async def test_an_erasure_that_did_not_commit_after_its_entry_is_refused_until_reapplied(
    database: Database, owner_conn: asyncpg.Connection
):
    # The crash between the ledger's fsync and the commit: the entry is there, the database lacks it.
    ledger = ErasureLedger(database.erasure_ledger_file)
    user_id = await new_subject(owner_conn, database, "lea")

    async def erase_then_fail_to_commit() -> None:
        async with owner_conn.transaction():
            await erase_subject(owner_conn, load_catalogue(), ledger, user_id=user_id)
            raise RuntimeError("the commit never came")

    with pytest.raises(RuntimeError, match="the commit never came"):
        await erase_then_fail_to_commit()
    assert await owner_conn.fetchval("SELECT count(*) FROM users WHERE user_id = $1", user_id) == 1
    assert len(ledger.entries()) == 1
    refused = r"1 erasure\(s\) .* not applied to this database.*`thuis erasures reapply`"
    with pytest.raises(ErasuresNotApplied, match=refused):
        await require_erasures_applied(owner_conn, ledger, in_flight_wait_s=0)
    [done] = await reapply_erasures(owner_conn, ledger)
    assert done.outcome == "erased again"
    assert await owner_conn.fetchval("SELECT count(*) FROM users WHERE user_id = $1", user_id) == 0
    await require_erasures_applied(owner_conn, ledger, in_flight_wait_s=0)
    assert await reapply_erasures(owner_conn, ledger) == []  # twice is a no-op


async def test_reapplying_erases_with_the_periods_and_keeps_the_audit_trail_pseudonymised(
    database: Database, owner_conn: asyncpg.Connection
):
    # Lea sold her home to Bas; her erasure's commit never came. Erasing her again after the fact is the
    # same erasure: her period of the home goes, Bas's stays with its gateway in service, and the audit
    # records about her stay with a pseudonym: reapply runs as the schema owner, whom the audit trigger
    # (migration 0013) refuses any deletion of an audit record.
    ledger = ErasureLedger(database.erasure_ledger_file)
    lea = await new_subject(owner_conn, database, "lea")
    bas = await new_subject(owner_conn, database, "bas")
    site_id = await owner_conn.fetchval("INSERT INTO sites (label) VALUES ('Sold') RETURNING site_id")
    await owner_conn.execute(
        "INSERT INTO gateways (gateway_serial, vendor, site_id) VALUES ('GW-SOLD', 'maxem', $1)", site_id
    )
    device = await owner_conn.fetchval(
        "INSERT INTO devices (gateway_serial, device_key, device_kind) VALUES ('GW-SOLD', 'grid', 'grid') "
        "RETURNING device_id"
    )
    for owner in ("lea", "bas"):
        await set_site_owner(owner_conn, site_id=site_id, owner=owner)
        await owner_conn.execute(
            "INSERT INTO energy_readings (measured_at, device_id, site_id, value, metric) "
            "VALUES (clock_timestamp(), $1, $2, 1, 'import_energy_kwh')",
            device,
            site_id,
        )
        await owner_conn.execute(
            "INSERT INTO audit_records (occurred_at, actor_user_id, actor_role, action, subject_user_id, "
            "site_id, resource) SELECT clock_timestamp(), NULL, 'installer', 'read', user_id, $1, 'readings' "
            "FROM users WHERE username = $2",
            site_id,
            owner,
        )

    async def erase_then_fail_to_commit() -> None:
        async with owner_conn.transaction():
            await erase_subject(owner_conn, load_catalogue(), ledger, user_id=lea)
            raise RuntimeError("the commit never came")

    with pytest.raises(RuntimeError, match="the commit never came"):
        await erase_then_fail_to_commit()
    [done] = await reapply_erasures(owner_conn, ledger)
    assert done.outcome == "erased again"
    readings = await owner_conn.fetch("SELECT measured_at FROM energy_readings WHERE site_id = $1", site_id)
    periods = await owner_conn.fetch(
        "SELECT owner_user_id, started_at FROM site_ownership_periods WHERE site_id = $1", site_id
    )
    assert [row["owner_user_id"] for row in periods] == [bas]
    assert [row["measured_at"] >= periods[0]["started_at"] for row in readings] == [True]  # Bas's alone
    assert await owner_conn.fetchval("SELECT count(*) FROM gateway_revocations") == 0
    audit = await owner_conn.fetch(
        "SELECT subject_user_id, subject_pseudonym IS NOT NULL AS pseudonymised FROM audit_records "
        "ORDER BY occurred_at"
    )
    assert [(row["subject_user_id"], row["pseudonymised"]) for row in audit] == [(None, True), (bas, False)]
    await require_erasures_applied(owner_conn, ledger, in_flight_wait_s=0)


async def test_reapplying_leaves_alone_another_account_that_was_given_the_erased_id(
    database: Database, owner_conn: asyncpg.Connection
):
    user_id = await new_subject(owner_conn, database, "newcomer")
    ledger = ErasureLedger(database.erasure_ledger_file)
    # The ledger's subject had this id in a database restored since; it was created at another moment.
    ledger.append(entry(user_id, created_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC)))
    [done] = await reapply_erasures(owner_conn, ledger)
    assert done.outcome == "another account holds the id now; it is left alone"
    assert await owner_conn.fetchval("SELECT count(*) FROM users WHERE user_id = $1", user_id) == 1
    await require_erasures_applied(owner_conn, ledger, in_flight_wait_s=0)


async def test_a_ledger_older_than_the_database_is_refused(
    database: Database, owner_conn: asyncpg.Connection
):
    ledger = ErasureLedger(database.erasure_ledger_file)
    user_id = await new_subject(owner_conn, database, "lea")
    await erase_subject(owner_conn, load_catalogue(), ledger, user_id=user_id)
    stale = ErasureLedger(database.erasure_ledger_file.with_name("restored-old-copy.jsonl"))
    with pytest.raises(ErasuresNotApplied, match=r"holds 1 erasure\(s\) that the ledger .* lacks"):
        await require_erasures_applied(owner_conn, stale, in_flight_wait_s=0)


def test_an_unfinished_last_line_is_no_entry_and_is_cut_before_the_next(tmp_path: Path):
    ledger = ErasureLedger(tmp_path / "ledger.jsonl")
    first = entry(1)
    ledger.append(first)
    with (tmp_path / "ledger.jsonl").open("a") as handle:
        handle.write('{"version":1,"entry_id":"')  # the writer stopped here; its erasure never committed
    assert [e.entry_id for e in ledger.entries()] == [first.entry_id]
    second = entry(2)
    ledger.append(second)
    assert [e.entry_id for e in ErasureLedger(tmp_path / "ledger.jsonl").entries()] == [
        first.entry_id,
        second.entry_id,
    ]


def test_a_damaged_entry_in_the_middle_is_refused(tmp_path: Path):
    path = tmp_path / "ledger.jsonl"
    path.write_text(entry(1).to_line() + "not json\n" + entry(2).to_line())
    with pytest.raises(LedgerError, match="line 2: not a ledger entry"):
        ErasureLedger(path).entries()
