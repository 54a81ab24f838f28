"""Research releases at the service level: the plan, the ledger, noisy aggregates, series with consent.

The attacks through the portal (differencing, linkage, counting oracles) are in test_release_attacks.py.
Every expectation here comes from the seeded numbers and the formulas of the design, not from the code.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import statistics
import subprocess
import sys
from typing import Any

import asyncpg
import psycopg
import pytest

from privacy.research import budget, clamps
from privacy.research.accounting import COUNT_SHARE, epsilon
from privacy.research.geography import make_geography
from privacy.research.release import prepare_release, preview
from privacy.research.request import ReleaseRefusedError, ReleaseRequest
from tests.fixtures.database import Database
from tests.privacy.population import DAYS, END, START, add_researcher, homes_in, read_archive, seed
from thuis.db import connection
from thuis.metrics import energy_measures

MEASURES = ("grid.import_energy_kwh", "grid.power_l1_w")


async def owner(database: Database) -> asyncpg.Connection:
    return await asyncpg.connect(database.owner_url)


async def set_up_project(database: Database, *, rho: float, scheme: str = "pc4", researcher: int) -> int:
    """Freeze a geography of the homes seeded so far and make a project with a budget."""
    async with connection(database.owner_url, application_name="test") as conn:
        geography = await make_geography(conn, scheme=scheme, k=10, created_by=None)  # type: ignore[arg-type]
        return await budget.create_project(
            conn,
            name=f"project {geography}",
            geography_id=geography,
            rho=rho,
            members=[researcher],
            created_by=None,
        )


def release_request(project_id: int, **overrides: Any) -> ReleaseRequest:
    values: dict[str, Any] = {
        "project_id": project_id,
        "kind": "aggregates",
        "start": START,
        "end": END,
        "measures": MEASURES,
        "resolution": "day",
        "rho": 0.5,
    }
    return ReleaseRequest(**{**values, **overrides})


async def release(url: str, request: ReleaseRequest, researcher: int) -> Any:
    async with connection(url, application_name="test") as conn:
        prepared = await prepare_release(conn, request=request, requested_by=researcher, via="test")
        try:
            archive = b"".join([chunk async for chunk in prepared.chunks()])
        finally:
            await prepared.close()
    return read_archive(archive)


def sql(database: Database, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(database.owner_url, autocommit=True) as conn:
        cursor = conn.execute(query, params)  # type: ignore[call-overload]
        return cursor.fetchall() if cursor.description else []


def test_every_energy_measure_has_a_clamp_with_a_reason():
    assert clamps.unbounded_measures() == []
    for name, metric in energy_measures().items():
        for resolution in clamps.HOURS:
            limit = clamps.clamp(metric, resolution)
            assert limit.lower <= 0 <= limit.upper or limit.lower >= 0, name
            assert limit.upper > limit.lower, name
            assert limit.reason, name


def test_a_meter_is_clamped_per_bucket_by_its_hourly_and_daily_bounds():
    grid = energy_measures()["grid.import_energy_kwh"]
    assert [clamps.clamp(grid, r).upper for r in ("15min", "hour", "day", "week", "month")] == [
        1.0,
        4.0,
        30.0,
        210.0,
        930.0,
    ]


async def test_the_plan_states_the_noise_the_formula_gives_before_any_data_is_read(database: Database):
    seed(database, homes_in({"1011": 12, "3511": 12}))
    researcher = add_researcher(database)
    project_id = await set_up_project(database, rho=5.0, researcher=researcher)
    async with connection(database.export_url, application_name="test") as conn:
        plan = await preview(conn, request=release_request(project_id, rho=0.5))
    cells = plan.cells
    assert cells == ["1011", "3511"]
    days = DAYS
    # sum of a vector of days: L2 sensitivity clamp * sqrt(days); sigma = sensitivity / sqrt(2 rho_measure)
    rho_measure = 0.5 * (1 - COUNT_SHARE) / 2
    grid_sd = 30.0 * math.sqrt(days) / math.sqrt(2 * rho_measure)
    power_sd = 5_000.0 * math.sqrt(days) / math.sqrt(2 * rho_measure)
    accuracy: Any = plan.accuracy()
    assert accuracy["measures"]["grid.import_energy_kwh"]["noise_sd"] == pytest.approx(grid_sd, rel=0.02)
    assert accuracy["measures"]["grid.power_l1_w"]["noise_sd"] == pytest.approx(power_sd, rel=0.02)
    assert accuracy["households"]["noise_sd"] == pytest.approx(1 / math.sqrt(2 * 0.5 * COUNT_SHARE), rel=0.02)
    assert plan.rho <= 0.5
    assert accuracy["rho"]["epsilon"] == pytest.approx(epsilon(0.5))
    # 0.5-zCDP implies (epsilon, 1e-6)-DP for epsilon = rho + 2 sqrt(rho ln(1/delta)) at worst (Bun, Steinke)
    assert epsilon(0.5) <= 0.5 + 2 * math.sqrt(0.5 * math.log(1e6))
    # Nothing was spent by planning.
    async with connection(database.owner_url, application_name="test") as conn:
        assert (await budget.budget(conn, project_id=project_id)).spent == 0


async def test_an_aggregate_release_fills_the_whole_grid_with_noisy_sums_near_the_truth(database: Database):
    seeded = seed(database, homes_in({"1011": 10, "1012": 10}, daily_import_kwh=6.0))
    seed(database, homes_in({"3511": 10}, daily_import_kwh=9.0))
    researcher = add_researcher(database)
    project_id = await set_up_project(database, rho=10.0, researcher=researcher)
    archive = await release(database.export_url, release_request(project_id, rho=8.0), researcher)
    rows = archive.rows
    assert archive.names == ["data.csv", "manifest.json"]
    cells = sorted({row["cell"] for row in rows})
    assert cells == ["1011", "1012", "3511"]
    # Every (cell, day, measure) of the plan, data or not, once.
    assert len(rows) == len(cells) * DAYS * len(MEASURES)
    truth = {"1011": 10 * 6.0, "1012": 10 * 6.0, "3511": 10 * 9.0}
    errors = []
    for row in rows:
        if row["measure"] == "grid.import_energy_kwh":
            sd = float(row["total_sd"])
            error = float(row["total"]) - truth[row["cell"]]
            assert abs(error) < 6 * sd
            errors.append(error / sd)
    # The noise is there: standardised errors have a spread near 1, not 0 (42 draws).
    assert 0.5 < statistics.pstdev(errors) < 1.6
    households = {row["cell"]: float(row["households"]) for row in rows}
    households_sd = float(rows[0]["households_sd"])
    assert all(abs(households[cell] - 10) < 6 * households_sd for cell in cells)
    manifest = archive.manifest
    assert manifest["kind"] == "aggregates"
    assert "differential privacy" in manifest["label"]
    assert manifest["privacy"]["rho_spent"] == 8.0
    assert manifest["privacy"]["unit"].startswith("one household")
    for secret in seeded.secrets:
        assert secret not in archive.text
    # The release's homes are recorded (for their owners' pages), never in the archive.
    assert sql(database, "SELECT count(*) FROM research_release_households") == [(30,)]
    assert sql(database, "SELECT kind, rho FROM research_budget_ledger ORDER BY entry_id") == [
        ("grant", 10.0),
        ("spend", 8.0),
    ]


async def test_homes_a_rule_leaves_out_are_in_no_release_and_nothing_says_so(database: Database):
    seed(database, homes_in({"1011": 10}))
    for standing in ("none", "closed", "restricted", "objected"):
        seed(database, homes_in({"1011": 1}, owner=standing))
    researcher = add_researcher(database)
    project_id = await set_up_project(database, rho=10.0, researcher=researcher)
    archive = await release(database.export_url, release_request(project_id), researcher)
    assert sql(database, "SELECT count(*) FROM research_release_households") == [(10,)]
    text = archive.text.lower()
    for word in ("restricted", "objected", "ownerless", "closed", "left_out", "excluded"):
        assert word not in text


async def test_a_release_that_would_overspend_is_refused_before_any_data_is_read(database: Database):
    seed(database, homes_in({"1011": 10}))
    researcher = add_researcher(database)
    project_id = await set_up_project(database, rho=1.0, researcher=researcher)
    await release(database.export_url, release_request(project_id, rho=0.6), researcher)
    with pytest.raises(ReleaseRefusedError, match=r"asks for rho = 0.6; the project has rho = 0.4 left of 1"):
        await release(database.export_url, release_request(project_id, rho=0.6), researcher)
    assert sql(database, "SELECT status, rho FROM research_releases ORDER BY release_id") == [
        ("finished", 0.6),
        ("refused", 0.0),
    ]
    # The refused release chose no homes.
    assert sql(database, "SELECT count(DISTINCT release_id) FROM research_release_households") == [(1,)]


async def test_concurrent_releases_cannot_overspend_together(database: Database):
    seed(database, homes_in({"1011": 10}))
    researcher = add_researcher(database)
    project_id = await set_up_project(database, rho=1.0, researcher=researcher)

    async def attempt() -> bool:
        try:
            await release(database.export_url, release_request(project_id, rho=0.3), researcher)
        except ReleaseRefusedError:
            return False
        return True

    outcomes = await asyncio.gather(*(attempt() for _ in range(8)))
    assert outcomes.count(True) == 3
    spent = sql(database, "SELECT sum(rho) FROM research_budget_ledger WHERE kind = 'spend'")[0][0]
    assert spent == pytest.approx(0.9)


def test_the_ledger_is_append_only_even_for_the_schema_owner(database: Database):
    researcher = add_researcher(database)
    asyncio.run(set_up_project(database, rho=1.0, researcher=researcher))
    for statement in ("UPDATE research_budget_ledger SET rho = 100", "DELETE FROM research_budget_ledger"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            sql(database, statement)
    assert sql(database, "SELECT rho FROM research_budget_ledger") == [(1.0,)]


async def test_a_region_is_whole_cells_of_the_geography_and_nothing_else(database: Database):
    seed(database, homes_in({"1011": 6, "1012": 6, "3511": 10}))
    researcher = add_researcher(database)
    project_id = await set_up_project(database, rho=5.0, researcher=researcher)
    # 1011 and 1012 hold 6 homes each: the geography merged them into 101.
    archive = await release(database.export_url, release_request(project_id, region=("101",)), researcher)
    assert {row["cell"] for row in archive.rows} == {"101"}
    for region in (("1011",), ("10",), ("1",), ("35",)):
        with pytest.raises(
            ReleaseRefusedError, match="release geography: a region is a set of its whole cells"
        ):
            await release(database.export_url, release_request(project_id, region=region), researcher)


async def test_a_researcher_of_another_project_cannot_spend_this_one(database: Database):
    seed(database, homes_in({"1011": 10}))
    researcher = add_researcher(database)
    stranger = add_researcher(database, "sven")
    project_id = await set_up_project(database, rho=5.0, researcher=researcher)
    with pytest.raises(ReleaseRefusedError, match=f"there is no research project {project_id}"):
        await release(database.export_url, release_request(project_id), stranger)
    assert sql(database, "SELECT count(*) FROM research_budget_ledger WHERE kind = 'spend'") == [(0,)]


async def test_series_hold_only_consenting_households_and_appear_in_their_access_logs(database: Database):
    seeded = seed(database, homes_in({"1011": 8}, consents=True))
    seed(database, homes_in({"1011": 4}))  # no consent
    seed(database, homes_in({"1011": 1}, consents=True, owner="restricted"))
    seed(database, homes_in({"1011": 1}, consents=True, owner="objected"))
    researcher = add_researcher(database)
    project_id = await set_up_project(database, rho=1.0, researcher=researcher)
    request = release_request(project_id, kind="households", rho=0.0, measures=("grid.import_energy_kwh",))
    first = await release(database.export_url, request, researcher)
    second = await release(database.export_url, request, researcher)
    pseudonyms = {row["pseudonym"] for row in first.rows}
    assert len(pseudonyms) == 8
    assert pseudonyms.isdisjoint({row["pseudonym"] for row in second.rows})
    assert {float(row["value"]) for row in first.rows} == {10.0}
    assert "pseudonymised personal data" in first.manifest["label"]
    assert first.manifest["privacy"]["rho_spent"] == 0.0
    consenting = [owner for owner in seeded.owner_ids if owner is not None]
    logged = sql(
        database,
        "SELECT subject_user_id, count(*) FROM audit_records WHERE resource = 'research_release' "
        "GROUP BY 1 ORDER BY 1",
    )
    assert logged == [(owner, 2) for owner in sorted(consenting)]
    assert sql(database, "SELECT sum(rho) FROM research_budget_ledger WHERE kind = 'spend'") == [(None,)]


async def test_an_aggregate_release_needs_rho_and_a_series_needs_none(database: Database):
    researcher = add_researcher(database)
    seed(database, homes_in({"1011": 10}))
    project_id = await set_up_project(database, rho=1.0, researcher=researcher)
    with pytest.raises(ReleaseRefusedError, match="give rho above 0"):
        await release(database.export_url, release_request(project_id, rho=0.0), researcher)
    with pytest.raises(ReleaseRefusedError, match="spend no privacy budget"):
        await release(
            database.export_url, release_request(project_id, kind="households", rho=0.5), researcher
        )
    with pytest.raises(ReleaseRefusedError, match="per-household series only at daily resolution"):
        await release(
            database.export_url,
            release_request(project_id, kind="households", rho=0.0, resolution="hour"),
            researcher,
        )


async def test_hourly_and_quarter_hourly_aggregates_come_from_their_sources(database: Database):
    seed(database, homes_in({"3511": 10}), hourly=True)
    with psycopg.connect(database.owner_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO energy_readings (measured_at, device_id, site_id, value, metric) "
            "SELECT t, d.device_id, g.site_id, 400, 'power_l1_w' FROM devices d JOIN gateways g USING "
            "(gateway_serial), generate_series(%s::timestamptz, %s::timestamptz, interval '5 minutes') t",
            (dt.datetime(2026, 3, 2, 8, tzinfo=dt.UTC), dt.datetime(2026, 3, 2, 8, 55, tzinfo=dt.UTC)),
        )
    researcher = add_researcher(database)
    project_id = await set_up_project(database, rho=90.0, researcher=researcher)
    one_day = START + dt.timedelta(days=1)
    hourly = await release(
        database.export_url,
        release_request(
            project_id, resolution="hour", end=one_day, measures=("grid.import_energy_kwh",), rho=40.0
        ),
        researcher,
    )
    assert len(hourly.rows) == 24
    # 10 homes each using 10/24 kWh an hour; the mean of 24 hours' noise has a sd of about 0.5 kWh at rho 36.
    assert statistics.mean(float(row["total"]) for row in hourly.rows) == pytest.approx(10 * 10 / 24, abs=2.5)
    quarters = await release(
        database.export_url,
        release_request(
            project_id,
            resolution="15min",
            end=one_day,
            measures=("grid.power_l1_w",),
            rho=40.0,
            file_format="parquet",
        ),
        researcher,
    )
    assert len(quarters.rows) == 96
    at_eight = [
        row for row in quarters.rows if row["period_start"].hour == 8 and row["period_start"].day == 2
    ]
    assert [row["period_start"].minute for row in at_eight] == [0, 15, 30, 45]
    sd = at_eight[0]["total_sd"]
    assert all(abs(row["total"] - 10 * 400) < 6 * sd for row in at_eight)


async def test_a_release_not_read_to_its_end_is_recorded_failed_and_its_rho_stays_spent(database: Database):
    seed(database, homes_in({"1011": 10}))
    researcher = add_researcher(database)
    project_id = await set_up_project(database, rho=1.0, researcher=researcher)
    async with connection(database.export_url, application_name="test") as conn:
        prepared = await prepare_release(
            conn, request=release_request(project_id, rho=0.7), requested_by=researcher, via="test"
        )
        stream = prepared.chunks()
        await anext(stream)
        await stream.aclose()
        await prepared.close()
    assert sql(database, "SELECT status FROM research_releases") == [("failed",)]
    async with connection(database.owner_url, application_name="test") as conn:
        assert (await budget.budget(conn, project_id=project_id)).left == pytest.approx(0.3)


def test_the_command_line_writes_the_archive_and_refuses_with_the_reason(database: Database, tmp_path: Any):
    seed(database, homes_in({"1011": 10}))
    researcher = add_researcher(database)
    project_id = asyncio.run(set_up_project(database, rho=1.0, researcher=researcher))
    out = tmp_path / "release.zip"
    common = [
        "export",
        *("--project", str(project_id), "--requested-by", str(researcher)),
        *("--from", START.isoformat(), "--to", END.isoformat(), "--measures", "grid.import_energy_kwh"),
        *("--resolution", "day", "--out", str(out), "--database-url", database.export_url),
    ]
    made = subprocess.run(
        [sys.executable, "-m", "cli", *common, "--rho", "0.8"], capture_output=True, text=True, check=False
    )
    assert made.returncode == 0, made.stderr
    archive = read_archive(out.read_bytes())
    assert json.loads(made.stdout)["release_id"] == archive.manifest["release_id"]
    assert len(archive.rows) == DAYS
    again = subprocess.run(
        [sys.executable, "-m", "cli", *common, "--rho", "0.8"], capture_output=True, text=True, check=False
    )
    assert again.returncode == 1
    assert "refused: the release asks for rho = 0.8; the project has rho = 0.2 left" in again.stderr
    assert not (tmp_path / "release.zip.partial").exists()
