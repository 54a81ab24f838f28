"""The retention worker with a controlled clock: exactly the expired records go, and nothing else."""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import psycopg
import pytest

from gateway_sim.fleet import simulate
from ops.localstack import MosquittoBroker
from ops.provision import provision
from retention.worker import Removal, run_retention
from tests.fixtures.database import Database
from tests.fixtures.ingest import IngestProcess
from tests.support import backfill_arguments, count_readings, expected_rows, run_sim, stored_rows, wait_for
from thuis.catalogue import load_catalogue

NOW = dt.datetime(2026, 6, 15, 10, 30, tzinfo=dt.UTC)
# Connectivity events lose whole one-day chunks: everything before the start of the day 14 days back.
EVENTS_CUTOFF = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
# Quarantine rows go one by one: exactly 14 days before now.
QUARANTINE_CUTOFF = NOW - dt.timedelta(days=14)
LOGIN_CUTOFF = dt.datetime(2026, 6, 10, tzinfo=dt.UTC)  # 5 days, whole days (one-day chunks)
ORDERS_CUTOFF = dt.datetime(2019, 6, 15, 10, 30, tzinfo=dt.UTC)  # 7 years from the order date, exactly
MARKETING_CUTOFF = dt.datetime(2023, 6, 15, 10, 30, tzinfo=dt.UTC)  # 36 months after the last activity
AUDIT_CUTOFF = dt.datetime(2024, 6, 15, tzinfo=dt.UTC)  # 2 years, whole days (one-day chunks)
CONSENT_CUTOFF = dt.datetime(2024, 6, 15, 10, 30, tzinfo=dt.UTC)  # 2 years, exactly
CONTRACTS_CUTOFF = dt.datetime(2019, 6, 15, 10, 30, tzinfo=dt.UTC)  # 7 years after the contract ended
ACCOUNTS_CUTOFF = NOW  # accounts go once their contract has ended
SESSIONS_CUTOFF = NOW  # sessions go once they have expired
GRANTS_CUTOFF = dt.datetime(2024, 6, 15, 10, 30, tzinfo=dt.UTC)  # 2 years after the access ended
REQUESTS_CUTOFF = dt.datetime(2024, 6, 15, 10, 30, tzinfo=dt.UTC)  # 2 years after closing, or the export
RUNNING_CONTRACTS = 3


def seed(database: Database) -> None:
    """Records of many ages in every category that has tables, hourly over 40 days, and old readings."""
    with psycopg.connect(database.owner_url) as conn:
        # Personal fields are sealed with a data key per subject; these rows get keys of no real use.
        conn.execute(
            "CREATE FUNCTION pg_temp.new_key(scope text) RETURNS bigint LANGUAGE sql VOLATILE AS "
            "$$INSERT INTO subject_keys (scope, master_key_id, wrapped_key) VALUES (scope, 'test', '\\x00') "
            "RETURNING key_id$$"
        )
        site = conn.execute(
            "INSERT INTO sites (label) VALUES ('retention test') RETURNING site_id"
        ).fetchone()
        assert site is not None
        conn.execute(
            "INSERT INTO gateways (gateway_serial, vendor, site_id, registered_at) "
            "VALUES ('BNX-1', 'benext', %s, %s)",
            (site[0], NOW - dt.timedelta(days=5000)),
        )
        conn.execute(
            "INSERT INTO devices (gateway_serial, device_key, device_kind, first_seen_at) "
            "VALUES ('BNX-1', 'node-2', 'thermostat', %s)",
            (NOW - dt.timedelta(days=5000),),
        )
        conn.execute(
            "INSERT INTO gateway_connectivity_events (occurred_at, gateway_serial, event, detail) "
            "SELECT t, 'BNX-1', 'traffic', NULL "
            "FROM generate_series(%s::timestamptz, %s, interval '1 hour') t",
            (NOW - dt.timedelta(days=40), NOW),
        )
        conn.execute(
            "INSERT INTO quarantine (topic, payload, payload_sha256, payload_size, reason, received_at, "
            "last_received_at) "
            "SELECT 'benext/BNX-1/nodes/' || n, 'x', sha256(n::text::bytea), 1, 'test', t, t "
            "FROM generate_series(%s::timestamptz, %s, interval '1 hour') WITH ORDINALITY AS g(t, n)",
            (NOW - dt.timedelta(days=40), NOW),
        )
        conn.execute(
            "INSERT INTO login_events (occurred_at, username, ip, outcome) SELECT t, 'anna', '192.0.2.7', "
            "'success' FROM generate_series(%s::timestamptz, %s, interval '1 hour') t",
            (NOW - dt.timedelta(days=40), NOW),
        )
        conn.execute(
            "INSERT INTO webshop_orders (ordered_at, products, key_id, customer_ciphertext) "
            "SELECT t, '[\"gateway\"]', pg_temp.new_key('order'), '\\x01' "
            "FROM generate_series(%s::timestamptz - interval '120 months', %s, interval '1 month') t",
            (NOW, NOW),
        )
        conn.execute(
            "INSERT INTO marketing_contacts (email_hash, contact_ciphertext, key_id, last_activity_at) "
            "SELECT '\\x02', '\\x01', pg_temp.new_key('marketing'), t "
            "FROM generate_series(%s::timestamptz - interval '72 months', %s, interval '1 month') t",
            (NOW, NOW),
        )
        conn.execute(  # data-subject requests closed every month of the last 4 years, and two still open
            "INSERT INTO subject_requests (kind, received_at, status, closed_at) "
            "SELECT 'access', t - interval '10 days', 'completed', t "
            "FROM generate_series(%s::timestamptz - interval '48 months', %s, interval '1 month') t "
            "UNION ALL SELECT 'erasure', %s::timestamptz - interval '3 years', 'in_progress', NULL "
            "UNION ALL SELECT 'access', %s, 'received', NULL",
            (NOW, NOW, NOW, NOW),
        )
        conn.execute(  # audit records around the 2-year mark, every 6 hours, and of the last month, daily
            "INSERT INTO audit_records (occurred_at, actor_role, action, resource) "
            "SELECT t, 'installer', 'read', 'site' FROM generate_series(%s::timestamptz "
            "- interval '2 years 20 days', %s::timestamptz - interval '2 years' + interval '20 days', "
            "interval '6 hours') t "
            "UNION ALL SELECT t, 'installer', 'read', 'site' "
            "FROM generate_series(%s::timestamptz - interval '30 days', %s, interval '1 day') t",
            (NOW, NOW, NOW, NOW),
        )
        conn.execute(
            "INSERT INTO consent_records (recorded_at, user_id, purpose, given, wording) "
            "SELECT t, 1, 'marketing', true, 'May we send you news?' "
            "FROM generate_series(%s::timestamptz - interval '48 months', %s, interval '1 month') t",
            (NOW, NOW),
        )
        # Contracts that ended every month of the last ten years, and some that run, started 30 years ago;
        # an account under each, and a privacy officer's with no contract. Ending a contract closes its
        # accounts.
        conn.execute(
            "INSERT INTO contracts (key_id, holder_ciphertext, started_at) "
            "SELECT pg_temp.new_key('billing'), '\\x01', %s::timestamptz "
            "- interval '30 years' FROM generate_series(1, 121 + %s) n",
            (NOW, RUNNING_CONTRACTS),
        )
        conn.execute(
            "INSERT INTO users (username, key_id, password_hash, role, contract_id) "
            "SELECT 'user-' || contract_id, pg_temp.new_key('account'), 'x', 'owner', contract_id "
            "FROM contracts UNION ALL SELECT 'privacy-officer', pg_temp.new_key('account'), 'x', "
            "'privacy_officer', NULL"
        )
        conn.execute("INSERT INTO display_preferences (user_id) SELECT user_id FROM users")
        conn.execute(
            "UPDATE contracts c SET ended_at = %s::timestamptz - (n - 1) * interval '1 month' "
            "FROM (SELECT contract_id, row_number() OVER (ORDER BY contract_id) AS n FROM contracts) s "
            "WHERE c.contract_id = s.contract_id AND n <= 121",
            (NOW,),
        )
        conn.execute(  # sessions that expire every hour from 10 days ago to 10 days from now
            "INSERT INTO sessions (token_sha256, user_id, kind, created_at, expires_at) "
            "SELECT sha256(t::text::bytea), u.user_id, 'api', t - interval '30 days', t "
            "FROM generate_series(%s::timestamptz - interval '10 days', %s + interval '10 days', "
            "interval '1 hour') t, users u WHERE u.username = 'privacy-officer'",
            (NOW, NOW),
        )
        # Residents' grants ended every month of the last 4 years, and one that holds; installer
        # assignments that ended (half by expiry, half revoked a day before it) every month of the last 4
        # years, and one that runs until next month.
        conn.execute(
            "INSERT INTO resident_grants (site_id, granted_at, ended_at) "
            "SELECT %s, %s::timestamptz - interval '5 years', t "
            "FROM generate_series(%s::timestamptz - interval '48 months', %s, interval '1 month') t "
            "UNION ALL SELECT %s, %s, NULL",
            (site[0], NOW, NOW, NOW, site[0], NOW),
        )
        company = conn.execute(
            "INSERT INTO installer_companies (name) VALUES ('Warmte BV') RETURNING company_id"
        ).fetchone()
        assert company is not None
        conn.execute(
            "INSERT INTO installer_assignments (site_id, company_id, assigned_at, expires_at, revoked_at) "
            "SELECT %s, %s, t - interval '30 days', t + CASE WHEN n %% 2 = 0 THEN interval '0' "
            "ELSE interval '1 day' END, CASE WHEN n %% 2 = 0 THEN NULL ELSE t END "
            "FROM generate_series(%s::timestamptz - interval '48 months', %s + interval '1 month', "
            "interval '1 month') WITH ORDINALITY AS g(t, n)",
            (site[0], company[0], NOW, NOW),
        )
        conn.execute(
            "INSERT INTO system_settings (site_id, kind, name, definition, updated_at) "
            "VALUES (%s, 'schedule', 'heating', '{}', %s)",
            (site[0], NOW - dt.timedelta(days=20 * 366)),
        )
        # Energy readings 12 years old and smart-home readings 20 years old are kept indefinitely.
        for table, age_days in (("energy_readings", 12 * 366), ("smart_home_readings", 20 * 366)):
            conn.execute(
                f"INSERT INTO {table} (measured_at, device_id, site_id, value, metric) "  # noqa: S608
                "SELECT t, 1, %s, 1.0, 'x' FROM generate_series(%s::timestamptz, %s, interval '30 days') t",
                (site[0], NOW - dt.timedelta(days=age_days), NOW),
            )


async def retention_run(database: Database, *, now: dt.datetime = NOW) -> list[Removal]:
    """Apply every policy once as the retention role, with the clock at `now`."""
    conn = await asyncpg.connect(database.retention_url)
    try:
        return await run_retention(conn, load_catalogue(), now=now)
    finally:
        await conn.close()


def snapshot(database: Database) -> dict[str, object]:
    with psycopg.connect(database.owner_url) as conn:
        return {
            name: conn.execute(query).fetchone()
            for name, query in {
                "events": "SELECT count(*), min(occurred_at) FROM gateway_connectivity_events",
                "quarantine": "SELECT count(*), min(last_received_at) FROM quarantine",
                "energy": "SELECT count(*), min(measured_at) FROM energy_readings",
                "smart_home": "SELECT count(*), min(measured_at) FROM smart_home_readings",
                "settings": "SELECT count(*), min(updated_at) FROM system_settings",
                "product": "SELECT count(*), min(d.first_seen_at) FROM devices d JOIN gateways g "
                "USING (gateway_serial) JOIN sites s USING (site_id)",
                "chunks": "SELECT count(*) FROM timescaledb_information.chunks",
                "runs": "SELECT count(*) FROM retention_runs",
            }.items()
        }


async def test_a_run_removes_exactly_what_expired_and_records_it(database: Database):
    seed(database)
    before = snapshot(database)
    removals = {r.category: r for r in await retention_run(database)}
    after = snapshot(database)

    with psycopg.connect(database.owner_url) as conn:
        events = conn.execute("SELECT min(occurred_at), count(*) FROM gateway_connectivity_events").fetchone()
        quarantine = conn.execute("SELECT min(last_received_at), count(*) FROM quarantine").fetchone()
        expected_events = (NOW - EVENTS_CUTOFF) // dt.timedelta(hours=1) + 1
        expected_quarantine = (NOW - QUARANTINE_CUTOFF) // dt.timedelta(hours=1) + 1
        # The hourly events fall on the half hour: the first one of the first kept day is at 00:30.
        assert events == (EVENTS_CUTOFF + dt.timedelta(minutes=30), expected_events)
        assert quarantine is not None
        assert quarantine[0] >= QUARANTINE_CUTOFF
        assert quarantine[1] == expected_quarantine
        recorded = conn.execute(
            "SELECT category, table_name, cutoff, method, chunks_dropped, rows_removed "
            "FROM retention_run_categories ORDER BY category"
        ).fetchall()
    assert after["energy"] == before["energy"]
    assert after["smart_home"] == before["smart_home"]
    assert after["settings"] == before["settings"]  # system settings: indefinitely
    assert after["product"] == before["product"] == (1, NOW - dt.timedelta(days=5000))
    with psycopg.connect(database.owner_url) as conn:
        # Display preferences go with the account they belong to, and stay with those kept.
        preferences = conn.execute(
            "SELECT count(*), count(u.user_id) FROM display_preferences p LEFT JOIN users u USING (user_id)"
        ).fetchone()
        # A contract kept for billing that outlived its accounts still holds the holder's details.
        unaccounted = conn.execute(
            "SELECT count(*) FROM contracts c "
            "WHERE NOT EXISTS (SELECT FROM users u WHERE u.contract_id = c.contract_id)"
        ).fetchone()
    assert preferences == (1 + RUNNING_CONTRACTS + 1, 1 + RUNNING_CONTRACTS + 1)
    assert unaccounted == (7 * 12,)
    with psycopg.connect(database.owner_url) as conn:
        # What retention deleted took its data key along (crypto-shredding); what stays keeps its own.
        keys = conn.execute(
            "SELECT (SELECT count(*) FROM subject_keys), (SELECT count(*) FROM users) + "
            "(SELECT count(*) FROM contracts) + (SELECT count(*) FROM webshop_orders) + "
            "(SELECT count(*) FROM marketing_contacts)"
        ).fetchone()
    assert keys is not None
    assert keys[0] == keys[1]
    connectivity, quarantined = removals["gateway_connectivity"], removals["quarantine"]
    assert (connectivity.method, connectivity.cutoff) == ("drop_chunks", EVENTS_CUTOFF)
    assert connectivity.rows == 40 * 24 + 1 - expected_events
    assert connectivity.chunks >= 25
    assert (quarantined.method, quarantined.cutoff, quarantined.rows) == (
        "delete",
        QUARANTINE_CUTOFF,
        40 * 24 + 1 - expected_quarantine,
    )
    by_category = {row[0]: row[1:] for row in recorded}
    assert by_category["gateway_connectivity"] == (
        "gateway_connectivity_events",
        EVENTS_CUTOFF,
        "drop_chunks",
        connectivity.chunks,
        connectivity.rows,
    )
    assert by_category["quarantine"] == ("quarantine", QUARANTINE_CUTOFF, "delete", 0, quarantined.rows)
    assert set(by_category) == {
        "gateway_connectivity",
        "quarantine",
        "login_data",
        "webshop_orders",
        "marketing_contacts",
        "audit_records",
        "portal_cookies_consent",
        "billing_records",
        "user_data",
        "sessions",
        "access_grants",
        "data_subject_requests",
        "pending_email_changes",
        "outgoing_mail",
    }

    # A second run at the same clock finds nothing more to remove.
    again = await retention_run(database)
    assert [(r.chunks, r.rows) for r in again] == [(0, 0)] * len(recorded)
    assert snapshot(database) | {"runs": None} == after | {"runs": None}


class StopAfter(asyncio.Event):
    """A stop signal that arrives after the run has asked `checks` times whether to stop."""

    def __init__(self, checks: int) -> None:
        super().__init__()
        self.checks = checks

    def is_set(self) -> bool:
        self.checks -= 1
        return self.checks < 0


async def test_a_run_told_to_stop_records_what_it_removed_and_leaves_the_rest(database: Database):
    seed(database)
    before = snapshot(database)
    conn = await asyncpg.connect(database.retention_url)
    try:
        # Told to stop while the first three tables (login events and the sign-in buckets, connectivity
        # events) are in hand.
        stopped = await run_retention(conn, load_catalogue(), now=NOW, stopping=StopAfter(3))
    finally:
        await conn.close()
    assert [(r.category, r.table) for r in stopped] == [
        ("login_data", "login_events"),
        ("login_data", "sign_in_throttle"),
        ("gateway_connectivity", "gateway_connectivity_events"),
    ]
    assert stopped[2].rows == 40 * 24 + 1 - ((NOW - EVENTS_CUTOFF) // dt.timedelta(hours=1) + 1)
    with psycopg.connect(database.owner_url) as conn:
        recorded = conn.execute(
            "SELECT category, rows_removed FROM retention_run_categories ORDER BY category, rows_removed"
        ).fetchall()
        quarantined = conn.execute("SELECT count(*), min(last_received_at) FROM quarantine").fetchone()
    assert recorded == sorted((r.category, r.rows) for r in stopped)
    assert quarantined == before["quarantine"]  # not reached: left for the next run
    rest = await retention_run(database)
    assert {r.category for r in rest} >= {"quarantine", "login_data"}
    assert {r.category: r.rows for r in rest}["gateway_connectivity"] == 0


# Per table: the time column, the cutoff and (oldest kept, how many kept) after a run at NOW.
PERIODS = [
    # hourly on the half hour: the first kept is 00:30 of the first kept day
    ("login_events", "occurred_at", LOGIN_CUTOFF, (LOGIN_CUTOFF + dt.timedelta(minutes=30), 131)),
    ("webshop_orders", "ordered_at", ORDERS_CUTOFF, (ORDERS_CUTOFF, 7 * 12 + 1)),  # monthly
    ("marketing_contacts", "last_activity_at", MARKETING_CUTOFF, (MARKETING_CUTOFF, 36 + 1)),  # monthly
    # every 6 hours (at 04:30, 10:30, ...) up to 20 days after the cutoff, then daily over the last month
    ("audit_records", "occurred_at", AUDIT_CUTOFF, (AUDIT_CUTOFF + dt.timedelta(hours=4.5), 82 + 31)),
    ("consent_records", "recorded_at", CONSENT_CUTOFF, (CONSENT_CUTOFF, 24 + 1)),  # monthly
    # ended monthly, and the running ones (ended_at NULL)
    ("contracts", "ended_at", CONTRACTS_CUTOFF, (CONTRACTS_CUTOFF, 7 * 12 + 1 + RUNNING_CONTRACTS)),
    # the one whose contract ended at this very moment, those running, and the privacy officer's
    ("users", "closed_at", ACCOUNTS_CUTOFF, (ACCOUNTS_CUTOFF, 1 + RUNNING_CONTRACTS + 1)),
    ("sessions", "expires_at", SESSIONS_CUTOFF, (SESSIONS_CUTOFF, 10 * 24 + 1)),  # hourly
    ("resident_grants", "ended_at", GRANTS_CUTOFF, (GRANTS_CUTOFF, 24 + 1 + 1)),  # monthly, and one held
    # monthly, and the one running until next month
    ("installer_assignments", "ended_at", GRANTS_CUTOFF, (GRANTS_CUTOFF, 24 + 1 + 1)),
    # closed monthly, and the two still open however old (an open request is never removed)
    ("subject_requests", "closed_at", REQUESTS_CUTOFF, (REQUESTS_CUTOFF, 24 + 1 + 2)),
]


async def test_each_category_keeps_exactly_its_period(database: Database):
    seed(database)
    removals = {r.table: r for r in await retention_run(database)}
    with psycopg.connect(database.owner_url) as conn:
        for table, column, cutoff, kept in PERIODS:
            assert removals[table].cutoff == cutoff, table
            oldest_and_count = conn.execute(f"SELECT min({column}), count(*) FROM {table}").fetchone()  # noqa: S608
            assert oldest_and_count == kept, table


async def test_a_dry_run_changes_nothing_and_says_what_a_run_would_remove(database: Database):
    seed(database)
    before = snapshot(database)
    command = [
        sys.executable,
        "-m",
        "cli",
        "retention",
        "run",
        "--dry-run",
        "--now",
        NOW.isoformat(),
        "--database-url",
        database.retention_url,
    ]
    result = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert snapshot(database) == before
    real = {(r.category, r.chunks, r.rows) for r in await retention_run(database)}
    said = {
        (fields[0], int(fields[4].split()[0]), int(fields[5].split()[0]))
        for fields in (line.split("\t") for line in result.stdout.splitlines())
    }
    assert said == real


def test_the_retention_role_cannot_remove_what_is_kept_or_read_personal_fields(database: Database):
    seed(database)
    with psycopg.connect(database.retention_url, autocommit=True) as conn:
        with pytest.raises(
            psycopg.errors.InsufficientPrivilege, match="may not drop chunks of energy_readings"
        ):
            conn.execute("SELECT retention_drop_chunks('energy_readings', now())")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT drop_chunks('energy_readings', older_than => now())")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM smart_home_readings")
        # Nothing kept indefinitely can be deleted, and of what expires only the time columns can be read.
        for statement in (
            "DELETE FROM system_settings",
            "DELETE FROM display_preferences",
            "DELETE FROM sites",
            "SELECT retention_drop_chunks('smart_home_readings', now())",
            "SELECT password_hash FROM users",
            "SELECT holder_ciphertext FROM contracts",
            "SELECT wrapped_key FROM subject_keys",
            "SELECT actor_user_id FROM audit_records",
            "SELECT wording FROM consent_records",
            "SELECT username FROM login_events",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)


async def test_the_report_shows_periods_legal_basis_oldest_records_and_last_runs(database: Database):
    seed(database)
    await retention_run(database)
    command = [sys.executable, "-m", "cli", "retention", "report", "--database-url", database.retention_url]
    result = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    blocks = {block.split("\n", 1)[0]: block for block in result.stdout.split("\n\n")}
    connectivity = blocks["Gateway connectivity metadata [gateway_connectivity]"]
    assert "kept         14 days, counted from the time it was recorded; legal minimum none" in connectivity
    assert "oldest       gateway_connectivity_events: 2026-06-01T00:30:00+00:00" in connectivity
    assert "before 2026-06-01T00:00:00+00:00:" in connectivity
    energy = blocks["Sensor data, energy monitoring [energy_readings]"]
    assert "kept         indefinitely" in energy
    assert "legal minimum 10 years" in energy
    assert "oldest       energy_readings: 2014-06-06T10:30:00+00:00" in energy  # 12 x 366 days back, held
    accounts = blocks["User data: accounts [user_data]"]
    assert "kept         0 days, counted from the end of the contract; legal minimum none" in accounts
    assert f"oldest       users: {NOW.isoformat()}" in accounts  # the account closed at this very moment


def test_serve_runs_on_a_schedule_and_stops_on_sigterm(database: Database):
    seed(database)  # around 2026-06-15: by the wall clock, every connectivity event has expired
    command = [
        sys.executable,
        "-m",
        "cli",
        "retention",
        "serve",
        "--interval-s",
        "0.5",
        "--database-url",
        database.retention_url,
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        with psycopg.connect(database.owner_url, autocommit=True) as conn:
            while time.monotonic() < deadline:
                runs = conn.execute("SELECT count(*) FROM retention_runs").fetchone()
                if runs is not None and runs[0] >= 2:
                    break
                time.sleep(0.1)
            events = conn.execute("SELECT count(*) FROM gateway_connectivity_events").fetchone()
        assert runs is not None
        assert runs[0] >= 2
        assert events == (0,)
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr


def test_serve_refuses_to_start_when_a_table_belongs_to_no_category(database: Database):
    with psycopg.connect(database.owner_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE newsletter_signups (email text)")
    command = [sys.executable, "-m", "cli", "retention", "serve", "--database-url", database.retention_url]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=30)
    assert result.returncode == 1
    assert "table 'newsletter_signups' belongs to no data category" in result.stderr


@pytest.mark.slow
async def test_retention_running_while_the_ingest_writes_loses_nothing_that_should_stay(
    database: Database, broker: MosquittoBroker, ingest: IngestProcess, certs_dir: Path
):
    now = dt.datetime.now(dt.UTC)
    fleet = {"benext": 1, "maxem": 1}
    start = now - dt.timedelta(days=60)  # readings of two months ago: kept indefinitely all the same
    with psycopg.connect(database.owner_url) as conn:
        gateways = provision(conn, certs_dir=certs_dir, **fleet, registered_at=start - dt.timedelta(days=1))
        conn.execute(  # connectivity events of the last 40 days, of which 26 days have expired
            "INSERT INTO gateway_connectivity_events (occurred_at, gateway_serial, event) "
            "SELECT t, %s, 'traffic' FROM generate_series(%s::timestamptz, %s, interval '1 hour') t",
            (gateways[0].gateway_serial, now - dt.timedelta(days=40), now - dt.timedelta(hours=1)),
        )
    site_of = {gateway.gateway_serial: gateway.site_id for gateway in gateways}
    stop = asyncio.Event()

    async def retention_loop() -> int:
        runs = 0
        conn = await asyncpg.connect(database.retention_url)
        try:
            while not stop.is_set():
                await run_retention(conn, load_catalogue(), now=dt.datetime.now(dt.UTC))
                runs += 1
        finally:
            await conn.close()
        return runs

    looping = asyncio.create_task(retention_loop())
    try:
        arguments = backfill_arguments(fleet, count=600, start=start)
        summary = await run_sim(broker, certs_dir, *[a for a in arguments if a != "--rate=0"], "--rate=150")
        assert summary["acknowledged"] == 600
        expected = expected_rows(simulate(**fleet, start=start, interval_s=60, count=600), site_of)
        conn = await asyncpg.connect(database.owner_url)
        try:

            async def all_stored() -> bool:
                return await count_readings(conn) >= expected.total()

            await wait_for(all_stored, what=f"{expected.total()} readings")
        finally:
            await conn.close()
    finally:
        stop.set()
        runs = await looping
    assert runs >= 3
    conn = await asyncpg.connect(database.owner_url)
    try:
        assert await stored_rows(conn) == expected
        cutoff = (now - dt.timedelta(days=14)).replace(hour=0, minute=0, second=0, microsecond=0)
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM gateway_connectivity_events WHERE occurred_at < $1", cutoff
            )
            == 0
        )
        # What the gateways did during the stream is recent, and kept: their connects and status messages.
        recent = await conn.fetch(
            "SELECT DISTINCT gateway_serial, event FROM gateway_connectivity_events WHERE occurred_at > $1",
            now - dt.timedelta(minutes=5),
        )
        assert {(serial, "online") for serial in site_of} <= {tuple(row) for row in recent}
        assert {(serial, "connected") for serial in site_of} <= {tuple(row) for row in recent}
    finally:
        await conn.close()
