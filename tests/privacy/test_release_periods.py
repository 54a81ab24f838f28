"""A home that changed hands in a release's period: each day is its owner's of that day, and that owner's
restriction, objection and consent decide whether it leaves, not those of the owner before or after.

The population of tests/privacy/population.py: every home's meter rises by a known amount a day. A home
changes hands at local midnight in the middle of the two weeks released; what must be in a release is
derived from which owner held which day, not from the code.
"""

from __future__ import annotations

import datetime as dt
import statistics
import zoneinfo
from typing import Any

from tests.fixtures.database import Database
from tests.privacy.population import DAYS, START, add_researcher, hand_over, homes_in, seed
from tests.privacy.test_release import release, release_request, set_up_project, sql

ZONE = zoneinfo.ZoneInfo("Europe/Amsterdam")
HANDED_OVER = START + dt.timedelta(days=7)  # the first day of the new owner
AT = dt.datetime.combine(HANDED_OVER, dt.time(), tzinfo=ZONE)


def days_of(rows: list[dict[str, Any]]) -> list[dt.date]:
    return sorted(dt.date.fromisoformat(row["period_start"]) for row in rows)


def owners_days(old: bool) -> list[dt.date]:
    first = START if old else HANDED_OVER
    return [first + dt.timedelta(days=d) for d in range(7)]


async def test_a_series_holds_each_owners_days_only_with_that_owners_consent(database: Database):
    seed(database, homes_in({"1011": 9}, consents=True))
    [new_restricts] = seed(database, homes_in({"1011": 1}, consents=True)).site_ids
    [old_restricted] = seed(database, homes_in({"1011": 1}, consents=True, owner="restricted")).site_ids
    [both_consent] = seed(database, homes_in({"1011": 1}, consents=True)).site_ids
    [new_objects] = seed(database, homes_in({"1011": 1}, consents=True)).site_ids
    hand_over(database, new_restricts, at=AT, standing="restricted", consents=True)
    hand_over(database, old_restricted, at=AT, consents=True)
    hand_over(database, both_consent, at=AT, consents=True)
    hand_over(database, new_objects, at=AT, standing="objected", consents=True)
    researcher = add_researcher(database)
    project_id = await set_up_project(database, rho=1.0, researcher=researcher)
    request = release_request(project_id, kind="households", rho=0.0, measures=("grid.import_energy_kwh",))
    archive = await release(database.export_url, request, researcher)
    by_pseudonym: dict[str, list[dict[str, Any]]] = {}
    for row in archive.rows:
        by_pseudonym.setdefault(row["pseudonym"], []).append(row)
    series = sorted((days_of(rows) for rows in by_pseudonym.values()), key=lambda days: (len(days), days))
    whole = [START + dt.timedelta(days=d) for d in range(DAYS)]
    old, new = owners_days(old=True), owners_days(old=False)
    # The 9 homes of one owner: their whole series. The four that changed hands: each owner who allows it,
    # under a pseudonym of their own (a series is one person's), never a day of the owner who does not.
    assert sorted(series) == sorted([whole] * 9 + [old, new, old, new, old])
    recorded = sql(
        database,
        "SELECT h.site_id, u.username LIKE 'nieuw%%' FROM research_release_households h "
        "JOIN users u ON u.user_id = h.owner_user_id WHERE h.site_id = ANY (%s) ORDER BY 1, 2",
        [new_restricts, old_restricted, both_consent, new_objects],
    )
    assert recorded == [
        (new_restricts, False),
        (old_restricted, True),
        (both_consent, False),
        (both_consent, True),
        (new_objects, False),
    ]


async def test_an_aggregate_release_counts_the_old_owners_days_when_only_the_new_owner_restricted(
    database: Database,
):
    seed(database, homes_in({"1011": 10}, daily_import_kwh=10.0))
    [changed] = seed(database, homes_in({"1011": 1}, daily_import_kwh=30.0)).site_ids
    hand_over(database, changed, at=AT, standing="restricted")
    researcher = add_researcher(database)
    project_id = await set_up_project(database, rho=100.0, researcher=researcher)
    request = release_request(project_id, measures=("grid.import_energy_kwh",), rho=90.0)
    archive = await release(database.export_url, request, researcher)
    totals = {dt.date.fromisoformat(row["period_start"]): float(row["total"]) for row in archive.rows}
    old = statistics.mean(totals[day] for day in owners_days(old=True))
    new = statistics.mean(totals[day] for day in owners_days(old=False))
    # The old owner's 30 kWh a day are in; the restricting new owner's are not. The noise of a mean of 7
    # days is 30 * sqrt(14) / sqrt(2 * 81) / sqrt(7) = 3.3 kWh, so the difference is 30 +- 4.7 (sd).
    assert 10 < old - new < 50, (old, new)
    assert sql(
        database,
        "SELECT u.username LIKE 'nieuw%%' FROM research_release_households h "
        "JOIN users u ON u.user_id = h.owner_user_id WHERE h.site_id = %s",
        changed,
    ) == [(False,)]
