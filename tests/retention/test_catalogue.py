"""The data catalogue: every category of the privacy statement, legal minimums, every table covered."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import asyncpg
import psycopg
import pytest

from retention.docs import PRIVACY_DOC, render_privacy_doc
from tests.fixtures.database import Database
from thuis.catalogue import (
    CATALOGUE_FILE,
    Catalogue,
    CatalogueError,
    Period,
    Schema,
    check_schema,
    load_catalogue,
)

EXPECTED = {
    # category: (kept, legal minimum) as docs/privacy statement and the issue set them
    "login_data": ("5 days", "none"),
    "gateway_connectivity": ("14 days", "none"),
    "quarantine": ("14 days", "none"),
    "portal_cookies_consent": ("2 years", "none"),
    "energy_readings": ("indefinitely", "10 years"),
    "energy_rollups": ("indefinitely", "none"),
    "smart_home_readings": ("indefinitely", "none"),
    "product_information": ("indefinitely", "none"),
    "system_settings": ("indefinitely", "none"),
    "display_preferences": ("indefinitely", "none"),
    "gateway_identity": ("indefinitely", "none"),
    "webshop_orders": ("7 years", "7 years"),
    "marketing_contacts": ("36 months", "none"),
    "user_data": ("0 days", "none"),  # accounts: while the contract runs
    "billing_records": ("7 years", "7 years"),
    "audit_records": ("2 years", "none"),
    "sessions": ("0 days", "none"),  # until the session expires or is ended
    "home_ownership": ("indefinitely", "none"),  # as long as the data it attributes
    "access_grants": ("2 years", "none"),
    "data_subject_requests": ("2 years", "none"),  # after the request was closed
    "research_releases": ("indefinitely", "none"),  # a budget holds only with every release on its ledger
    "privacy_loss_records": ("indefinitely", "none"),  # as long as the home
    "pending_email_changes": ("0 days", "none"),  # until the link is followed or expires
    "outgoing_mail": ("7 days", "none"),  # deleted once sent; stale after a week
}


def variant(tmp_path: Path, old: str, new: str) -> Path:
    text = CATALOGUE_FILE.read_text()
    assert old in text
    path = tmp_path / "policies.toml"
    path.write_text(text.replace(old, new, 1))
    return path


def test_the_catalogue_has_every_category_with_its_period_and_legal_minimum():
    catalogue = load_catalogue()
    assert {c.id: (c.keep_text, c.legal_minimum_text) for c in catalogue.categories} == EXPECTED
    by_id = {c.id: c for c in catalogue.categories}
    assert by_id["user_data"].measured_from == "contract_end"
    assert by_id["billing_records"].measured_from == "contract_end"
    assert all(category.tables for category in catalogue.categories)
    assert by_id["marketing_contacts"].measured_from == "last_activity"
    assert by_id["webshop_orders"].measured_from == "order_date"
    assert by_id["gateway_connectivity"].tables == ("gateway_connectivity_events",)


def test_a_policy_shorter_than_its_legal_minimum_is_refused(tmp_path: Path):
    path = variant(
        tmp_path,
        'keep = "7 years"\nlegal_minimum = "7 years"',
        'keep = "84 months"\nlegal_minimum = "7 years"',
    )
    load_catalogue(path)  # 84 months is 7 years: accepted
    path = variant(
        tmp_path,
        'keep = "7 years"\nlegal_minimum = "7 years"',
        'keep = "2555 days"\nlegal_minimum = "7 years"',
    )
    with pytest.raises(CatalogueError, match=r"keeps 2555 days, shorter than its legal minimum of 7 years"):
        load_catalogue(path)  # 2,555 days is 7 years of 365 days, but 7 years can be 2,557 days


def test_energy_readings_kept_for_a_limited_time_must_still_reach_ten_years(tmp_path: Path):
    path = variant(
        tmp_path,
        'keep = "indefinitely"\nlegal_minimum = "10 years"',
        'keep = "5 years"\nlegal_minimum = "10 years"',
    )
    with pytest.raises(
        CatalogueError, match="category energy_readings: keeps 5 years, shorter than its legal minimum"
    ):
        load_catalogue(path)


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ('tables = ["quarantine"]', 'tables = ["gateways"]', "table 'gateways' is in more than one category"),
        ('keep = "5 days"', 'keep = "5 fortnights"', "is not a period like"),
        ('keep = "5 days"', 'keep = "-5 days"', "is not a period like"),
        (
            'tables = ["login_events", "sign_in_throttle"]',
            "tables = []",
            "category login_data: names no table",
        ),
        ('measured_from = "order_date"', 'measured_from = "whenever"', "measured_from must be one of"),
        (
            'source = "BeNext privacy regulation"\n',
            'source = "x"\nretention = "1 day"\n',
            "unknown field 'retention'",
        ),
        (
            'time_column = "occurred_at"\nkeep = "5 days"',
            'keep = "5 days"',
            "keeps 5 days but names no time_column",
        ),
        (
            'schema_migrations = "',
            'gateways = "',
            "table 'gateways' is in category 'gateway_identity' and also",
        ),
    ],
)
def test_a_malformed_catalogue_is_refused_with_the_reason(tmp_path: Path, old: str, new: str, problem: str):
    with pytest.raises(CatalogueError, match=problem):
        load_catalogue(variant(tmp_path, old, new))


async def check(database: Database, catalogue: Catalogue) -> Schema:
    """Hold the test's database against a catalogue, as its owner."""
    conn = await asyncpg.connect(database.owner_url)
    try:
        return await check_schema(conn, catalogue)
    finally:
        await conn.close()


async def test_every_table_of_the_migrated_database_belongs_to_a_category(database: Database):
    schema = await check(database, load_catalogue())
    assert "energy_readings" in schema.tables
    assert schema.chunk_intervals["login_events"] == dt.timedelta(days=1)


async def test_a_table_that_belongs_to_no_category_is_refused(database: Database):
    with psycopg.connect(database.owner_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE customer_notes (note text)")
    with pytest.raises(CatalogueError, match="table 'customer_notes' belongs to no data category"):
        await check(database, load_catalogue())


async def test_a_category_naming_a_missing_table_or_column_is_refused(database: Database, tmp_path: Path):
    catalogue = load_catalogue(
        variant(
            tmp_path,
            'tables = ["quarantine"]\nmeasured_from = "last_activity"\ntime_column = "last_received_at"',
            'tables = ["quarantine"]\nmeasured_from = "last_activity"\ntime_column = "last_seen"',
        )
    )
    with pytest.raises(CatalogueError, match="'quarantine' has no column 'last_seen'"):
        await check(database, catalogue)
    catalogue = load_catalogue(
        variant(
            tmp_path,
            'tables = ["contracts"]',
            'tables = ["billing_contracts"]',
        )
    )
    with pytest.raises(CatalogueError, match="names table 'billing_contracts', which does not exist"):
        await check(database, catalogue)


async def test_a_hypertable_with_a_limited_period_must_have_one_day_chunks(database: Database):
    await check(database, load_catalogue())
    with psycopg.connect(database.owner_url, autocommit=True) as conn:
        conn.execute("SELECT set_chunk_time_interval('login_events', INTERVAL '7 days')")
    with pytest.raises(CatalogueError, match="'login_events' has chunks of 7 days, but retention"):
        await check(database, load_catalogue())


def test_the_check_command_refuses_an_uncovered_table(database: Database):
    command = [sys.executable, "-m", "cli", "retention", "check", "--database-url", database.owner_url]
    passed = subprocess.run(command, capture_output=True, text=True, check=False)
    assert passed.returncode == 0, passed.stderr
    with psycopg.connect(database.owner_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE visitor_log (ip inet)")
    refused = subprocess.run(command, capture_output=True, text=True, check=False)
    assert refused.returncode == 1
    assert "table 'visitor_log' belongs to no data category" in refused.stderr


def test_docs_privacy_md_is_generated_from_the_catalogue():
    assert PRIVACY_DOC.read_text() == render_privacy_doc(load_catalogue()), (
        "docs/privacy.md is out of date: run `thuis retention docs --write`"
    )


@pytest.mark.parametrize(
    ("period", "moment", "cutoff"),
    [
        ("14 days", dt.datetime(2026, 3, 10, tzinfo=dt.UTC), dt.datetime(2026, 2, 24, tzinfo=dt.UTC)),
        ("1 year", dt.datetime(2028, 2, 29, 12, tzinfo=dt.UTC), dt.datetime(2027, 2, 28, 12, tzinfo=dt.UTC)),
        ("36 months", dt.datetime(2026, 5, 31, tzinfo=dt.UTC), dt.datetime(2023, 5, 31, tzinfo=dt.UTC)),
        ("1 month", dt.datetime(2026, 3, 31, tzinfo=dt.UTC), dt.datetime(2026, 2, 28, tzinfo=dt.UTC)),
        ("7 years", dt.datetime(2026, 1, 15, tzinfo=dt.UTC), dt.datetime(2019, 1, 15, tzinfo=dt.UTC)),
        ("0 days", dt.datetime(2026, 1, 15, 9, tzinfo=dt.UTC), dt.datetime(2026, 1, 15, 9, tzinfo=dt.UTC)),
    ],
)
def test_periods_count_back_by_the_calendar(period: str, moment: dt.datetime, cutoff: dt.datetime):
    assert Period.parse(period).before(moment) == cutoff


@pytest.mark.parametrize(
    ("longer", "shorter", "holds"),
    [
        ("7 years", "7 years", True),
        ("84 months", "7 years", True),
        ("36 months", "3 years", True),
        ("731 days", "2 years", True),
        ("730 days", "2 years", False),
        ("11 months", "1 year", False),
        ("1 year", "366 days", False),
        ("1 year", "365 days", True),
    ],
)
def test_a_period_is_at_least_another_whatever_the_calendar(longer: str, shorter: str, holds: bool):
    assert Period.parse(longer).at_least(Period.parse(shorter)) is holds


def test_only_categories_with_a_legal_minimum_are_kept_for_a_legal_duty_on_erasure(tmp_path: Path):
    catalogue = load_catalogue()
    kept = {c.id for c in catalogue.categories if c.on_erasure == "keep_for_legal_duty"}
    assert kept == {"webshop_orders", "billing_records"}
    path = variant(tmp_path, 'id = "login_data"', 'id = "login_data"\non_erasure = "keep_for_legal_duty"')
    with pytest.raises(CatalogueError, match="login_data: kept for a legal duty on erasure, but names no"):
        load_catalogue(path)
    path = variant(tmp_path, 'id = "login_data"', 'id = "login_data"\non_erasure = "maybe"')
    with pytest.raises(CatalogueError, match="on_erasure must be one of erase, keep_for_legal_duty"):
        load_catalogue(path)
