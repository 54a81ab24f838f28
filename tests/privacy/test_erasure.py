"""Erasure: crypto-shredding plus deletion leaves nothing readable about the subject, except a legal duty."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any, LiteralString, cast

import asyncpg
import psycopg
import pytest

from ops.accounts import create_account, set_site_owner
from ops.registry import create_site
from ops.revocations import apply_revocations
from privacy.keys.crypto import DecryptionError, Keyring, open_sealed, seal_json
from privacy.keys.fields import SEALED_COLUMNS, SITES_ADDRESS
from privacy.keys.ledger import ErasureLedger
from privacy.keys.subject_keys import load_key
from privacy.subjects.erasure import ErasureError, erase_subject
from privacy.subjects.records import add_marketing_contact, add_webshop_order
from retention.worker import run_retention
from tests.fixtures.database import Database
from tests.support import as_owner
from thuis.catalogue import load_catalogue

NOW = dt.datetime.now(dt.UTC)
PASSWORD = "correct horse battery staple"


@dataclass
class Household:
    """An owner with everything Thuis can hold about them, and the identifiers to look for."""

    user_id: int
    username: str
    email: str
    holder_name: str
    gateway_serial: str
    site_id: int
    device_ids: list[int]
    key_ids: list[int]


def sql(conn: psycopg.Connection[Any], query: str, *params: object) -> list[tuple[Any, ...]]:
    cursor = conn.execute(cast("LiteralString", query), params)
    return cursor.fetchall() if cursor.description else []


def seed_household(
    conn: psycopg.Connection[Any],
    url: str,
    keyring: Keyring,
    *,
    name: str,
    contract_ended: dt.datetime | None,
    order_placed: dt.datetime,
    installer: str,
    resident: str,
) -> Household:
    email, holder = f"{name}@example.org", f"{name.title()} van Dijk"
    account = as_owner(
        url,
        create_account,
        keyring,
        username=name,
        password=PASSWORD,
        role="owner",
        email=email,
        holder_name=holder,
    )
    as_owner(
        url, create_account, keyring, username=resident, password=PASSWORD, role="resident", resident_of=name
    )
    site_id = create_site(conn, label=f"Huize {name.title()}")
    as_owner(url, set_site_owner, site_id=site_id, owner=name)
    owner_key = sql(conn, "SELECT key_id FROM users WHERE user_id = %s", account.user_id)[0][0]
    serial = f"MAXEM-{name.upper()}-01"
    sql(
        conn,
        "INSERT INTO gateways (gateway_serial, vendor, site_id, last_seen_ip) "
        "VALUES (%s, 'maxem', %s, '198.51.100.7')",
        serial,
        site_id,
    )
    device_ids = [
        sql(
            conn,
            "INSERT INTO devices (gateway_serial, device_key, device_kind) VALUES (%s, %s, %s) "
            "RETURNING device_id",
            serial,
            key,
            kind,
        )[0][0]
        for key, kind in (("grid", "grid"), ("thermostat-1", "thermostat"))
    ]
    grid, thermostat = device_ids
    sql(
        conn,
        "INSERT INTO energy_readings (measured_at, device_id, site_id, value, metric) "
        "SELECT t, %s, %s, extract(epoch FROM t) / 3600, 'import_energy_kwh' "
        "FROM generate_series(now() - interval '3 days', now(), interval '15 minutes') t",
        grid,
        site_id,
    )
    sql(
        conn,
        "INSERT INTO smart_home_readings (measured_at, device_id, site_id, value, metric) "
        "SELECT t, %s, %s, 20.5, 'temperature_c' FROM generate_series(now() - interval '1 day', now(), "
        "interval '1 hour') t",
        thermostat,
        site_id,
    )
    sql(
        conn,
        "INSERT INTO energy_hourly (device_id, metric, hour, site_id, samples, mean_value, min_value, "
        "max_value, last_value, last_at) SELECT %s, 'import_energy_kwh', h, %s, 4, 1, 1, 1, 1, h "
        "FROM generate_series(date_trunc('hour', now() - interval '1 day'), now(), interval '1 hour') h",
        grid,
        site_id,
    )
    sql(
        conn,
        "INSERT INTO energy_daily (device_id, metric, day, site_id, samples, mean_value, min_value, "
        "max_value, last_value, last_at) VALUES (%s, 'import_energy_kwh', current_date, %s, 96, 1, 1, 1, 1, "
        "now())",
        grid,
        site_id,
    )
    sql(
        conn,
        "INSERT INTO energy_rollup_pending (device_id, hour) VALUES (%s, date_trunc('hour', now()))",
        grid,
    )
    sql(
        conn,
        "INSERT INTO gateway_connectivity_events (occurred_at, gateway_serial, event, detail) "
        "VALUES (now(), %s, 'online', 'from 198.51.100.7')",
        serial,
    )
    sql(
        conn,
        "INSERT INTO quarantine (topic, gateway_serial, payload, payload_sha256, payload_size, reason, "
        "received_at, last_received_at) VALUES (%s, %s, 'x', sha256(%s::bytea), 1, 'test', now(), now())",
        f"maxem/{serial}/meter",
        serial,
        serial.encode(),
    )
    sql(
        conn,
        "INSERT INTO system_settings (site_id, kind, name, definition) "
        "VALUES (%s, 'schedule', 'night', '{}')",
        site_id,
    )
    sql(conn, "INSERT INTO display_preferences (user_id, language) VALUES (%s, 'en')", account.user_id)
    sql(
        conn,
        "INSERT INTO resident_grants (site_id, resident_user_id, granted_by, invited_username, accepted_at) "
        "SELECT %s, user_id, %s, username, now() FROM users WHERE username = %s",
        site_id,
        account.user_id,
        resident,
    )
    assignment = sql(
        conn,
        "INSERT INTO installer_assignments (site_id, installer_user_id, company_id, assigned_by, expires_at) "
        "SELECT %s, user_id, installer_company_id, %s, now() + interval '10 days' FROM users "
        "WHERE username = %s RETURNING assignment_id",
        site_id,
        account.user_id,
        installer,
    )[0][0]
    sql(
        conn,
        "INSERT INTO audit_records (occurred_at, actor_user_id, actor_role, action, subject_user_id, "
        "site_id, resource, assignment_id) SELECT now(), user_id, 'installer', 'read', %s, %s, 'owner', %s "
        "FROM users WHERE username = %s",
        account.user_id,
        site_id,
        assignment,
        installer,
    )
    sql(
        conn,
        "INSERT INTO sessions (token_sha256, user_id, kind, expires_at, ip, user_agent) "
        "VALUES (sha256(%s::bytea), %s, 'browser', now() + interval '1 hour', '198.51.100.7', 'Firefox')",
        name.encode(),
        account.user_id,
    )
    sql(
        conn,
        "INSERT INTO login_events (occurred_at, username, ip, outcome) VALUES (now(), %s, '198.51.100.7', "
        "'success')",
        name,
    )
    sql(
        conn,
        "INSERT INTO consent_records (recorded_at, user_id, purpose, given, wording) "
        "VALUES (now(), %s, 'marketing', true, 'May we send you news?')",
        account.user_id,
    )
    sql(
        conn,
        "INSERT INTO subject_requests (subject_user_id, filed_by_user_id, kind) VALUES (%s, %s, 'erasure')",
        account.user_id,
        account.user_id,
    )
    as_owner(url, add_marketing_contact, keyring, email=email.upper(), name=holder, last_activity_at=NOW)
    as_owner(
        url,
        add_webshop_order,
        keyring,
        ordered_at=order_placed,
        products=["gateway"],
        customer_user_id=account.user_id,
        delivery_address=f"Dorpsstraat 1, {name}",
        invoice_address=None,
        phone="+31 6 12345678",
    )
    if contract_ended is not None:
        sql(
            conn,
            "UPDATE contracts SET started_at = %s, ended_at = %s WHERE holder_user_id = %s",
            contract_ended - dt.timedelta(days=3000),
            contract_ended,
            account.user_id,
        )
    key_ids = [
        row[0]
        for row in sql(
            conn,
            "SELECT key_id FROM users WHERE user_id = %s UNION ALL SELECT key_id FROM contracts "
            "WHERE holder_user_id = %s UNION ALL SELECT key_id FROM webshop_orders "
            "WHERE customer_user_id = %s UNION ALL SELECT key_id FROM marketing_contacts "
            "WHERE email_hash = %s",
            account.user_id,
            account.user_id,
            account.user_id,
            keyring.email_hash(email),
        )
    ]
    assert owner_key in key_ids
    return Household(account.user_id, name, email, holder, serial, site_id, device_ids, key_ids)


@pytest.fixture
def households(database: Database) -> dict[str, Household]:
    keyring = database.keyring
    url = database.owner_url
    as_owner(
        url,
        create_account,
        keyring,
        username="ilse",
        password=PASSWORD,
        role="installer",
        company="Warmte BV",
    )
    with psycopg.connect(url, autocommit=True) as conn:
        long_ago = NOW - dt.timedelta(days=8 * 366)
        last_year = NOW - dt.timedelta(days=365)
        return {
            "gone": seed_household(
                conn,
                url,
                keyring,
                name="annabel",
                contract_ended=long_ago,
                order_placed=long_ago,
                installer="ilse",
                resident="rita",
            ),
            "kept": seed_household(
                conn,
                url,
                keyring,
                name="cornelis",
                contract_ended=last_year,
                order_placed=last_year,
                installer="ilse",
                resident="ruud",
            ),
            "other": seed_household(
                conn,
                url,
                keyring,
                name="bertram",
                contract_ended=None,
                order_placed=NOW,
                installer="ilse",
                resident="roos",
            ),
        }


async def erase(database: Database, user_id: int) -> Any:
    """Erase as the portal does: as thuis_api, which may only call erase_data_subject."""
    conn = await asyncpg.connect(database.api_url)
    try:
        return await erase_subject(
            conn, load_catalogue(), ErasureLedger(database.erasure_ledger_file), user_id=user_id
        )
    finally:
        await conn.close()


async def revoke_queued(database: Database, certs_dir: Path) -> list[str]:
    """Run the revocation worker once, as thuis_certs: it revokes the queued gateways and forgets them."""
    conn = await asyncpg.connect(database.certs_url)
    try:
        run = await apply_revocations(conn, ca_dir=certs_dir, publish_to=None, broker=None)
    finally:
        await conn.close()
    return run.gateways


def data_keys(database: Database, household: Household) -> dict[int, bytes]:
    return {
        key_id: as_owner(database.owner_url, load_key, database.keyring, key_id)
        for key_id in household.key_ids
    }


def footprint(database: Database, household: Household) -> list[str]:
    """Return every place in the database that still holds something about the household, readably."""
    found = []
    words = [household.username, household.email, household.holder_name, household.gateway_serial]
    ids = {
        "user_id": {household.user_id},
        "site_id": {household.site_id},
        "device_id": set(household.device_ids),
        "key_id": set(household.key_ids),
    }
    with psycopg.connect(database.owner_url) as conn:
        columns = sql(
            conn,
            "SELECT c.table_name, c.column_name, c.data_type FROM information_schema.columns c "
            "JOIN pg_tables t ON t.tablename = c.table_name AND t.schemaname = c.table_schema "
            "WHERE c.table_schema = 'public' ORDER BY 1, 2",
        )
        tables = sorted({table for table, _, _ in columns})
        for table in tables:
            for (row_text,) in sql(conn, f"SELECT t::text FROM {table} t"):  # noqa: S608 - names from the catalog
                found += [
                    f"{table}: {word!r} in {row_text}" for word in words if word.lower() in row_text.lower()
                ]
        for table, column, data_type in columns:
            kind = next((name for name in ids if column == name or column.endswith("_" + name)), None)
            if kind is not None and data_type == "bigint":
                rows = sql(conn, f"SELECT {column} FROM {table} WHERE {column} = ANY(%s)", list(ids[kind]))  # noqa: S608
                found += [f"{table}.{column} = {value}" for (value,) in rows]
    return found


def readable_ciphertext(database: Database, keys: dict[int, bytes]) -> list[str]:
    """Return every sealed value in the database that still opens with one of these data keys.

    Each value is tried in its own row under every one of the keys and their ids: whoever kept a former key
    and its id, and rewrote the row's key id, must still find nothing.
    """
    opened = []
    with psycopg.connect(database.owner_url) as conn:
        columns = {
            (table, column)
            for table, column in sql(
                conn,
                "SELECT table_name, column_name FROM information_schema.columns "
                "WHERE table_schema = 'public' AND data_type = 'bytea' AND column_name LIKE '%%ciphertext'",
            )
        }
        assert columns == {(c.table, c.ciphertext) for c in SEALED_COLUMNS}, "a sealed column is not listed"
        for column in SEALED_COLUMNS:
            rows = sql(
                conn,
                f"SELECT {column.row_key}, {column.ciphertext} FROM {column.table} "  # noqa: S608
                f"WHERE {column.ciphertext} IS NOT NULL",
            )
            for row_key, sealed in rows:
                for key_id, key in keys.items():
                    try:
                        open_sealed(key, bytes(sealed), context=column.at(row_key, key_id))
                    except DecryptionError:
                        continue
                    opened.append(f"{column} of row {row_key} opens with former key {key_id}")
    return opened


async def test_erasure_leaves_nothing_readable_about_the_subject(
    database: Database, households: dict[str, Household], certs_dir: Path
):
    gone, other = households["gone"], households["other"]
    keys = data_keys(database, gone)
    assert footprint(database, gone), "the seed holds nothing to erase"
    assert readable_ciphertext(database, keys)
    other_before = footprint(database, other)
    result = await erase(database, gone.user_id)
    assert result.kept == []
    assert result.refusal() is None
    assert result.removed["energy_readings"] == 3 * 24 * 4 + 1
    assert result.removed["users"] == 1
    # The home's gateway waits for the revocation worker, which revokes it and then forgets its serial.
    assert await revoke_queued(database, certs_dir) == [gone.gateway_serial]
    # Only the former id of the erased account stays, as the record that this database holds the erasure
    # of the ledger (so that a restore of an older backup is erased again); it refers to no one here.
    assert footprint(database, gone) == [f"applied_erasures.subject_user_id = {gone.user_id}"]
    assert readable_ciphertext(database, keys) == []
    # Every other household is as it was; the erased one's resident keeps their own account.
    assert footprint(database, other) == other_before
    with psycopg.connect(database.owner_url) as conn:
        assert sql(conn, "SELECT count(*) FROM users WHERE username = 'rita'") == [(1,)]
        # The request for erasure stays as the proof it was done, naming no one.
        assert sql(conn, "SELECT count(*) FROM subject_requests WHERE subject_user_id IS NULL") == [(1,)]


async def test_erasure_keeps_only_what_a_legal_duty_still_holds_and_says_until_when(
    database: Database, households: dict[str, Household], certs_dir: Path
):
    kept = households["kept"]
    keys = data_keys(database, kept)
    result = await erase(database, kept.user_id)
    assert {k.category: k.rows for k in result.kept} == {"billing_records": 1, "webshop_orders": 1}
    until = {k.category: k.until for k in result.kept}
    assert until["billing_records"] == (NOW - dt.timedelta(days=365)).date().replace(
        year=(NOW - dt.timedelta(days=365)).year + 7
    )
    refusal = result.refusal()
    assert refusal is not None
    assert refusal.startswith("erasure refused in part, as the law requires: User data: billing records (1)")
    assert "fiscal record keeping (art. 52 AWR)" in refusal
    # The billing record and the order still open, with their own keys; nothing else does.
    with psycopg.connect(database.owner_url) as conn:
        contract_id, contract_key = sql(
            conn, "SELECT contract_id, key_id FROM contracts WHERE key_id = ANY(%s)", kept.key_ids
        )[0]
        order_id, order_key = sql(
            conn, "SELECT order_id, key_id FROM webshop_orders WHERE key_id = ANY(%s)", kept.key_ids
        )[0]
    still_open = readable_ciphertext(database, keys)
    assert {contract_key, order_key} <= set(keys)
    assert sorted(still_open) == [
        f"contracts.holder of row {contract_id} opens with former key {contract_key}",
        f"webshop_orders.customer of row {order_id} opens with former key {order_key}",
    ]
    assert await revoke_queued(database, certs_dir) == [kept.gateway_serial]
    remaining = footprint(database, kept)
    # Only the kept records' own keys remain, and the erasure's record of the former account id; no
    # account, site, reading, event or grant.
    assert sorted(remaining) == sorted(
        [
            f"applied_erasures.subject_user_id = {kept.user_id}",
            f"contracts.key_id = {contract_key}",
            f"subject_keys.key_id = {contract_key}",
            f"webshop_orders.key_id = {order_key}",
            f"subject_keys.key_id = {order_key}",
        ]
    )


def _home(conn: psycopg.Connection[Any], url: str, *, serial: str, owners: list[str]) -> int:
    """Make a home owned by each of `owners` in turn, with a gateway and a reading in every owner's period."""
    site_id = create_site(conn, label=f"Huis {serial}")
    sql(
        conn,
        "INSERT INTO gateways (gateway_serial, vendor, site_id) VALUES (%s, 'maxem', %s)",
        serial,
        site_id,
    )
    device = sql(
        conn,
        "INSERT INTO devices (gateway_serial, device_key, device_kind) VALUES (%s, 'grid', 'grid') "
        "RETURNING device_id",
        serial,
    )[0][0]
    for owner in owners:
        as_owner(url, set_site_owner, site_id=site_id, owner=owner)
        sql(
            conn,
            "INSERT INTO energy_readings (measured_at, device_id, site_id, value, metric) "
            "VALUES (clock_timestamp(), %s, %s, 1, 'import_energy_kwh')",
            device,
            site_id,
        )
    return site_id


async def test_erasure_revokes_the_gateways_of_the_subjects_homes_and_not_of_a_home_another_owner_has_now(
    database: Database, certs_dir: Path
):
    url, keyring = database.owner_url, database.keyring
    for name in ("vera", "wim", "yara", "zeno"):
        as_owner(url, create_account, keyring, username=name, password=PASSWORD, role="owner")
    with psycopg.connect(url, autocommit=True) as conn:
        only_vera = _home(conn, url, serial="GW-VERA-ONLY", owners=["vera"])
        sold_to_wim = _home(conn, url, serial="GW-SOLD-TO-WIM", owners=["vera", "wim"])
        bought_by_zeno = _home(conn, url, serial="GW-BOUGHT-BY-ZENO", owners=["yara", "zeno"])
        ids = dict(sql(conn, "SELECT username, user_id FROM users WHERE role = 'owner'"))

    def state() -> dict[str, tuple[bool, int]]:
        """Per gateway: decommissioned or not, and how many readings its home still holds."""
        with psycopg.connect(url) as conn:
            rows = sql(
                conn,
                "SELECT g.gateway_serial, g.decommissioned_at IS NOT NULL, "
                "(SELECT count(*) FROM energy_readings r WHERE r.site_id = g.site_id) FROM gateways g",
            )
        return {serial: (decommissioned, readings) for serial, decommissioned, readings in rows}

    # Vera sold one home to Wim: erasing her takes the home only she owned, with its gateway, and her
    # period of the other; Wim's gateway stays in service.
    await erase(database, ids["vera"])
    assert await revoke_queued(database, certs_dir) == ["GW-VERA-ONLY"]
    assert state() == {"GW-SOLD-TO-WIM": (False, 1), "GW-BOUGHT-BY-ZENO": (False, 2)}
    # Zeno bought his home from Yara: erasing him keeps the home for Yara's period, but its gateway, which
    # from now on measures only his household, is decommissioned and revoked.
    await erase(database, ids["zeno"])
    assert await revoke_queued(database, certs_dir) == ["GW-BOUGHT-BY-ZENO"]
    assert state() == {"GW-SOLD-TO-WIM": (False, 1), "GW-BOUGHT-BY-ZENO": (True, 1)}
    # Wim's home is his alone now (Vera's period went with her): erasing him takes it whole.
    await erase(database, ids["wim"])
    assert await revoke_queued(database, certs_dir) == ["GW-SOLD-TO-WIM"]
    assert state() == {"GW-BOUGHT-BY-ZENO": (True, 1)}
    with psycopg.connect(url) as conn:
        sites = {row[0] for row in sql(conn, "SELECT site_id FROM sites")}
    assert (only_vera in sites, sold_to_wim in sites, bought_by_zeno in sites) == (False, False, True)


async def test_erasure_of_someone_unknown_is_refused(database: Database):
    with pytest.raises(ErasureError, match="there is no account 424242"):
        await erase(database, 424242)


def test_the_portal_role_erases_only_through_the_function(database: Database):
    with psycopg.connect(database.api_url, autocommit=True) as conn:
        for statement in (
            "DELETE FROM energy_readings",
            "DELETE FROM users",
            "DELETE FROM subject_keys",
            "DELETE FROM sites",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(cast("LiteralString", statement))


async def test_an_erased_installer_leaves_the_owners_record_of_their_reads_without_their_name(
    database: Database, households: dict[str, Household]
):
    other = households["other"]
    with psycopg.connect(database.owner_url) as conn:
        ilse, assignments = sql(
            conn,
            "SELECT u.user_id, count(a.*) FROM users u JOIN installer_assignments a "
            "ON a.installer_user_id = u.user_id WHERE u.username = 'ilse' GROUP BY u.user_id",
        )[0]
        reads = sql(conn, "SELECT count(*) FROM audit_records WHERE site_id = %s", other.site_id)[0][0]
    assert (assignments, reads) == (3, 1)
    await erase(database, ilse)
    with psycopg.connect(database.owner_url) as conn:
        left = sql(
            conn,
            "SELECT actor_user_id, actor_role, resource FROM audit_records WHERE site_id = %s",
            other.site_id,
        )
        assignment = sql(
            conn,
            "SELECT installer_user_id, company_id IS NOT NULL FROM installer_assignments WHERE site_id = %s",
            other.site_id,
        )
        assert sql(conn, "SELECT count(*) FROM users WHERE username = 'ilse'") == [(0,)]
    # The owner still sees that an installer of the company read their data, under which assignment.
    assert left == [(None, "installer", "owner")]
    assert assignment == [(None, True)]


async def test_when_retention_removes_an_account_its_sites_address_is_shredded_with_its_key(
    database: Database, households: dict[str, Household]
):
    gone = households["gone"]  # the contract ended 8 years ago, so retention removes the account
    keyring = database.keyring
    with psycopg.connect(database.owner_url) as conn:
        key_id = sql(conn, "SELECT key_id FROM users WHERE user_id = %s", gone.user_id)[0][0]
        key = as_owner(database.owner_url, load_key, keyring, key_id)
        sealed = seal_json(key, {"street": "Dorpsstraat"}, context=SITES_ADDRESS.at(gone.site_id, key_id))
        sql(
            conn,
            "UPDATE sites SET postcode_area = '3511', address_key_id = %s, address_ciphertext = %s "
            "WHERE site_id = %s",
            key_id,
            sealed,
            gone.site_id,
        )
    retention = await asyncpg.connect(database.retention_url)
    try:
        await run_retention(retention, load_catalogue(), now=NOW)
    finally:
        await retention.close()
    with psycopg.connect(database.owner_url) as conn:
        site = sql(
            conn,
            "SELECT owner_user_id, postcode_area, address_key_id, address_ciphertext FROM sites "
            "WHERE site_id = %s",
            gone.site_id,
        )
        assert sql(conn, "SELECT count(*) FROM subject_keys WHERE key_id = %s", key_id) == [(0,)]
    # The site and its coarse cell stay (product information); the address went with the key.
    assert site == [(None, "3511", None, None)]
