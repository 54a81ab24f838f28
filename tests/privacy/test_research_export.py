"""Research exports against the real database: who is left out, k, pseudonyms, what never leaves, the CLI."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import re
import secrets
import zipfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import h3
import psycopg
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from api.security import token_hash
from cli.main import main as thuis_main
from ops.localstack import PostgresCluster
from ops.roles import set_role_password
from privacy.location import h3_cell
from privacy.research import export as export_module
from privacy.research.export import prepare_export
from privacy.research.request import ExportRefusedError, ExportRequest, research_measures
from tests.fixtures.database import Database
from tests.fixtures.portal import running_portal

EXPORT_PASSWORD = "export-role-password-for-tests"
START = dt.date(2026, 3, 2)  # a Monday
DAYS = 14
END = START + dt.timedelta(days=DAYS)
MEASURES = ("grid.import_energy_kwh", "grid.power_l1_w")
OWNER_STATES = ("ok", "none", "closed", "restricted", "objected")
# Postcode areas clustered in a few regions, so that merging up happens; coordinates around a few towns.
AREAS = ("1011", "1012", "1017", "1104", "3511", "3512", "9711")
TOWNS = ((52.37, 4.89), (52.09, 5.12), (53.22, 6.57))
PC6 = re.compile(r"\b[1-9][0-9]{3} ?[A-Z]{2}\b")


@dataclass
class Home:
    """A household to seed: where it is, who owns it, and what it uses."""

    postcode_area: str
    coordinate: tuple[float, float] = (52.37, 4.89)
    owner: str = "ok"
    daily_import_kwh: float = 10.0
    power_w: float = 400.0

    @property
    def cell(self) -> str:
        return h3_cell(*self.coordinate)


@dataclass
class Seeded:
    """What was seeded, to look for in an export: it must never appear there."""

    site_ids: list[int] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)  # names, e-mails, PC6 postcodes, coordinates, serials


@dataclass
class Exported:
    """An export's archive, its rows and manifest, and all of its text."""

    names: list[str]
    rows: list[dict[str, Any]]
    manifest: dict[str, Any]
    text: str


@pytest.fixture(scope="module")
def export_password(pg_cluster: PostgresCluster) -> str:
    with psycopg.connect(pg_cluster.dsn("postgres"), autocommit=True) as conn:
        set_role_password(conn, role="thuis_export", password=EXPORT_PASSWORD)
    return EXPORT_PASSWORD


@pytest.fixture
def export_url(database: Database, pg_cluster: PostgresCluster, export_password: str) -> str:
    return pg_cluster.dsn(database.name, user="thuis_export", password=export_password)


def reset(database: Database) -> None:
    with psycopg.connect(database.owner_url, autocommit=True) as conn:
        conn.execute(
            "TRUNCATE energy_daily, energy_hourly, energy_readings, devices, gateways, research_exports, "
            "sites, users, subject_keys CASCADE"
        )


def seed(database: Database, homes: list[Home], *, hourly: bool = False) -> Seeded:
    """Seed owners, sites with an address in their label, a Maxem meter each, and daily (or hourly) data."""
    seeded = Seeded()
    with psycopg.connect(database.owner_url) as conn:
        for number, home in enumerate(homes):
            owner_id = None
            name = f"jansen{number:04d}"
            if home.owner != "none":
                key_id = conn.execute(
                    "INSERT INTO subject_keys (scope, master_key_id, wrapped_key) "
                    "VALUES ('account', 'test', '\\x00') RETURNING key_id"
                ).fetchall()[0][0]
                owner_id = conn.execute(
                    "INSERT INTO users (username, password_hash, role, key_id, closed_at, restricted_since, "
                    "objects_to_research_since) VALUES (%s, 'not-a-hash', 'owner', %s, %s, %s, %s) "
                    "RETURNING user_id",
                    (
                        name,
                        key_id,
                        dt.datetime(2026, 1, 1, tzinfo=dt.UTC) if home.owner == "closed" else None,
                        dt.datetime(2026, 1, 1, tzinfo=dt.UTC) if home.owner == "restricted" else None,
                        dt.datetime(2026, 1, 1, tzinfo=dt.UTC) if home.owner == "objected" else None,
                    ),
                ).fetchall()[0][0]
            pc6 = f"{home.postcode_area} {chr(65 + number % 26)}{chr(65 + number // 26 % 26)}"
            latitude, longitude = home.coordinate
            label = f"Huize Jansen {number}, Kerkstraat {number}, {pc6}, {latitude:.6f},{longitude:.6f}"
            site_id = conn.execute(
                "INSERT INTO sites (label, owner_user_id, postcode_area, h3_cell) VALUES (%s, %s, %s, %s) "
                "RETURNING site_id",
                (label, owner_id, home.postcode_area, home.cell),
            ).fetchall()[0][0]
            serial = f"MAXEM-T{number:05d}X"
            conn.execute(
                "INSERT INTO gateways (gateway_serial, vendor, site_id) VALUES (%s, 'maxem', %s)",
                (serial, site_id),
            )
            grid = conn.execute(
                "INSERT INTO devices (gateway_serial, device_key, device_kind) VALUES (%s, 'grid', 'grid') "
                "RETURNING device_id",
                (serial,),
            ).fetchall()[0][0]
            conn.execute(
                HOURLY_ROWS if hourly else DAILY_ROWS,
                {
                    "device": grid,
                    "site": site_id,
                    "start": START,
                    "days": DAYS,
                    "use": home.daily_import_kwh,
                    "power": home.power_w,
                    "first_hour": FIRST_HOUR,
                },
            )
            seeded.site_ids.append(site_id)
            seeded.secrets += [name, f"{name}@example.nl", pc6, pc6.replace(" ", ""), serial, label]
            seeded.secrets += [f"{latitude:.6f}", f"{longitude:.6f}"]
    return seeded


# A meter that rises by `use` a day, from the day before the period; power constant. One row per day.
DAILY_ROWS = """
INSERT INTO energy_daily (device_id, metric, day, site_id, samples, mean_value, min_value, max_value,
                          last_value, last_at)
SELECT %(device)s, m.metric, d::date, %(site)s, 1440, m.value, m.value, m.value, m.value,
       d + interval '23 hours'
FROM generate_series(%(start)s::date - 1, %(start)s::date + %(days)s - 1, interval '1 day') AS d
CROSS JOIN LATERAL (VALUES ('import_energy_kwh', 1000 + (d::date - %(start)s::date + 1) * %(use)s::float8),
                           ('power_l1_w', %(power)s::float8)) AS m(metric, value)
"""
# The same per UTC hour (a 24th of the day's use an hour) from the hour before the period's first.
HOURLY_ROWS = """
INSERT INTO energy_hourly (device_id, metric, hour, site_id, samples, mean_value, min_value, max_value,
                           last_value, last_at)
SELECT %(device)s, m.metric, h, %(site)s, 12, m.value, m.value, m.value, m.value, h + interval '55 minutes'
FROM generate_series(%(first_hour)s::timestamptz, %(first_hour)s::timestamptz + interval '24 hours',
                     interval '1 hour') AS h
CROSS JOIN LATERAL (
    VALUES ('import_energy_kwh',
            1000 + extract(epoch FROM h - %(first_hour)s::timestamptz) / 3600 * %(use)s / 24),
           ('power_l1_w', %(power)s::float8)
) AS m(metric, value)
"""
FIRST_HOUR = dt.datetime(2026, 3, 1, 22, tzinfo=dt.UTC)  # the hour before 2026-03-02 00:00 in Amsterdam


def request(**overrides: Any) -> ExportRequest:
    values: dict[str, Any] = {
        "start": START,
        "end": END,
        "measures": MEASURES,
        "resolution": "day",
        "shape": "households",
    }
    return ExportRequest(**{**values, **overrides})


async def export(url: str, export_request: ExportRequest, *, requested_by: int | None = None) -> Exported:
    conn = await asyncpg.connect(url)
    try:
        prepared = await prepare_export(conn, request=export_request, requested_by=requested_by, via="test")
        archive = b"".join([chunk async for chunk in prepared.chunks()])
    finally:
        await conn.close()
    return read_archive(archive)


def read_archive(archive: bytes) -> Exported:
    with zipfile.ZipFile(io.BytesIO(archive)) as package:
        names = package.namelist()
        manifest_text = package.read("manifest.json").decode()
        data = package.read(names[0])
    if names[0].endswith(".csv"):
        text = data.decode()
        rows: list[dict[str, Any]] = list(csv.DictReader(io.StringIO(text)))
    else:
        rows = pq.read_table(io.BytesIO(data)).to_pylist()
        text = "\n".join(",".join(str(value) for value in row.values()) for row in rows)
    return Exported(names, rows, json.loads(manifest_text), text + "\n" + manifest_text)


def refused(url: str, export_request: ExportRequest) -> str:
    with pytest.raises(ExportRefusedError) as refusal:
        asyncio.run(export(url, export_request))
    return refusal.value.reason


def records(database: Database) -> list[tuple[Any, ...]]:
    with psycopg.connect(database.owner_url) as conn:
        return conn.execute(
            "SELECT status, reason, manifest, parameters FROM research_exports ORDER BY export_id"
        ).fetchall()


def homes_in(areas: dict[str, int], **extra: Any) -> list[Home]:
    return [Home(area, **extra) for area, count in areas.items() for _ in range(count)]


def assert_nothing_identifying(exported: Exported, seeded: Seeded) -> None:
    for secret in seeded.secrets:
        assert secret not in exported.text, secret
    assert PC6.search(exported.text) is None
    assert "@" not in exported.text
    for row in exported.rows:
        cell = str(row["cell"])
        if cell.isdigit():
            assert 2 <= len(cell) <= 4
        else:
            assert h3.is_valid_cell(cell), cell
            assert 5 <= h3.get_resolution(cell) <= 7, cell


# --- Per-household series --------------------------------------------------------------------------------


def test_household_series_are_daily_consumption_and_mean_under_a_pseudonym_and_a_released_cell(
    database: Database, export_url: str
):
    seeded = seed(database, homes_in({"1011": 6, "1012": 6, "3511": 12}, daily_import_kwh=7.5))
    exported = asyncio.run(export(export_url, request()))
    assert exported.names == ["data.csv", "manifest.json"]
    assert_nothing_identifying(exported, seeded)
    by_household: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in exported.rows:
        by_household[row["pseudonym"]].append(row)
    assert len(by_household) == 24
    assert all(re.fullmatch(r"[0-9a-f]{16}", pseudonym) for pseudonym in by_household)
    # 1011 and 1012 hold 6 each: merged into 101; 3511 holds 12: released as is.
    assert Counter(rows[0]["cell"] for rows in by_household.values()) == {"101": 12, "3511": 12}
    for rows in by_household.values():
        assert len(rows) == DAYS * 2
        consumption = [float(r["value"]) for r in rows if r["measure"] == "grid.import_energy_kwh"]
        assert consumption == pytest.approx([7.5] * DAYS)
        assert {r["statistic"] for r in rows if r["measure"] == "grid.power_l1_w"} == {"mean"}
        assert [r["period_start"] for r in rows[::2]] == [
            str(START + dt.timedelta(days=n)) for n in range(DAYS)
        ]
    manifest = exported.manifest
    assert manifest["k"] == 10
    assert manifest["rows"] == 24 * DAYS * 2
    assert manifest["households"] == {
        "with_data": 24,
        "eligible": 24,
        "suppressed_in_cells_under_k": 0,
        "released": 24,
    }
    assert manifest["cells"]["released"] == {"101": 12, "3511": 12}
    assert manifest["cells"]["fine_cells_merged_into_a_parent"] == 2
    assert manifest["software"]["version"]
    assert "pseudonym" in manifest
    assert [row[0] for row in records(database)] == ["finished"]


def test_weekly_series_sum_the_consumption_of_the_week(database: Database, export_url: str):
    seed(database, homes_in({"1011": 10}, daily_import_kwh=2.0))
    exported = asyncio.run(export(export_url, request(resolution="week", file_format="parquet")))
    assert exported.names == ["data.parquet", "manifest.json"]
    consumption = [row for row in exported.rows if row["statistic"] == "consumption"]
    assert len(consumption) == 10 * 2
    assert [row["value"] for row in consumption] == pytest.approx([14.0] * 20)
    assert {row["days_with_data"] for row in consumption} == {7}
    assert {row["period_start"] for row in consumption} == {START, START + dt.timedelta(days=7)}


def test_excluded_households_are_left_out_and_counted_by_rule(database: Database, export_url: str):
    homes = homes_in({"1011": 12})
    homes += [
        Home("1011", owner=state, daily_import_kwh=999.0) for state in OWNER_STATES[1:] for _ in range(2)
    ]
    seeded = seed(database, homes)
    exported = asyncio.run(export(export_url, request()))
    assert_nothing_identifying(exported, seeded)
    assert len({row["pseudonym"] for row in exported.rows}) == 12
    assert all(float(row["value"]) != pytest.approx(999.0) for row in exported.rows)
    assert exported.manifest["rules"]["households_left_out"] == {
        "ownerless": 2,
        "owner_account_closed": 2,
        "restricted": 2,
        "objected": 2,
        "without_cell": 0,
    }
    assert exported.manifest["households"]["with_data"] == 20


def test_pseudonyms_differ_between_two_exports_of_the_same_data(database: Database, export_url: str):
    seed(database, homes_in({"1011": 10}))
    first = asyncio.run(export(export_url, request()))
    second = asyncio.run(export(export_url, request()))
    first_names = {row["pseudonym"] for row in first.rows}
    second_names = {row["pseudonym"] for row in second.rows}
    assert len(first_names) == len(second_names) == 10
    assert not first_names & second_names


# --- Refusals ---------------------------------------------------------------------------------------------


def test_a_request_that_breaks_a_rule_is_refused_with_the_reason_and_recorded(
    database: Database, export_url: str
):
    seed(database, homes_in({"1011": 9, "9711": 12}))
    cases = [
        (request(resolution="hour"), "per-household series only at daily resolution or coarser"),
        (request(k=5), "k must be at least 10"),
        (request(measures=("grid.energy_kwh",)), "unknown measure 'grid.energy_kwh'; known measures: "),
        (request(region=("1011",)), "the region holds 9 households"),
        (request(region=("10", "abc")), "neither a postcode prefix"),
        (request(resolution="week", start=START + dt.timedelta(days=1)), "start and end on a Monday"),
        (request(end=START), "the period must end after it starts"),
        (request(k=13), "none of the 21 households falls in a pc4 cell that holds k = 13"),
    ]
    for export_request, reason in cases:
        assert reason in refused(export_url, export_request)
    stored = records(database)
    assert [status for status, *_ in stored] == ["refused"] * len(cases)
    assert all(reason_ for _, reason_, _, _ in stored)
    assert "solar.energy_kwh" in stored[2][1]  # the known measures are listed


def test_a_region_selects_its_households_and_counts_only_them(database: Database, export_url: str):
    seed(database, homes_in({"1011": 10, "1104": 3, "9711": 10}))
    exported = asyncio.run(export(export_url, request(region=("10", "11"))))
    assert exported.manifest["households"]["with_data"] == 13
    assert exported.manifest["cells"]["released"] == {"1011": 10}
    assert exported.manifest["households"]["suppressed_in_cells_under_k"] == 3
    assert exported.manifest["cells"]["fine_cells_suppressed"] == 1
    assert {row["cell"] for row in exported.rows} == {"1011"}


# --- Aggregates -------------------------------------------------------------------------------------------


def test_hourly_aggregates_hold_at_least_k_households_and_suppress_smaller_groups(
    database: Database, export_url: str
):
    homes = homes_in({"1011": 8}, daily_import_kwh=24.0) + homes_in({"1012": 4}, daily_import_kwh=48.0)
    seeded = seed(database, homes, hourly=True)
    with psycopg.connect(database.owner_url, autocommit=True) as conn:
        # Three households lack the power of the first hour: that group holds 9 of the cell's 12.
        conn.execute(
            "DELETE FROM energy_hourly WHERE site_id = ANY (%s) AND hour = %s AND metric = 'power_l1_w'",
            (seeded.site_ids[:3], FIRST_HOUR + dt.timedelta(hours=1)),
        )
    exported = asyncio.run(
        export(export_url, request(shape="aggregates", resolution="hour", end=START + dt.timedelta(days=1)))
    )
    assert_nothing_identifying(exported, seeded)
    assert all(int(row["households"]) >= 10 for row in exported.rows)
    assert {row["cell"] for row in exported.rows} == {"101"}  # 8 + 4 merged
    import_rows = [row for row in exported.rows if row["measure"] == "grid.import_energy_kwh"]
    assert len(import_rows) == 24  # the hours of 2 March in Amsterdam
    assert [float(row["total"]) for row in import_rows] == pytest.approx([8 * 1.0 + 4 * 2.0] * 24)
    assert exported.manifest["groups"] == {"released": 47, "suppressed_under_k": 1}


def test_quarter_hourly_aggregates_come_from_the_readings(database: Database, export_url: str):
    seeded = seed(database, homes_in({"3511": 10}), hourly=True)
    with psycopg.connect(database.owner_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO energy_readings (measured_at, device_id, site_id, value, metric) "
            "SELECT t, d.device_id, g.site_id, 400, 'power_l1_w' FROM devices d JOIN gateways g USING "
            "(gateway_serial), generate_series(%s::timestamptz, %s::timestamptz, interval '5 minutes') t",
            (dt.datetime(2026, 3, 2, 8, tzinfo=dt.UTC), dt.datetime(2026, 3, 2, 8, 55, tzinfo=dt.UTC)),
        )
    exported = asyncio.run(
        export(
            export_url,
            request(
                shape="aggregates",
                resolution="15min",
                measures=("grid.power_l1_w",),
                end=START + dt.timedelta(days=1),
                file_format="parquet",
            ),
        )
    )
    assert_nothing_identifying(exported, seeded)
    assert [row["period_start"].minute for row in exported.rows] == [0, 15, 30, 45]
    assert [row["households"] for row in exported.rows] == [10] * 4
    assert [row["mean"] for row in exported.rows] == pytest.approx([400.0] * 4)


# --- Streaming, and the command line -----------------------------------------------------------------------


def test_the_archive_streams_in_batches(database: Database, export_url: str, monkeypatch: pytest.MonkeyPatch):
    seed(database, homes_in({"1011": 10}))
    monkeypatch.setattr(export_module, "FETCH_ROWS", 25)

    async def chunk_sizes() -> list[int]:
        conn = await asyncpg.connect(export_url)
        try:
            parquet = request(file_format="parquet")  # a row group per batch (CSV goes through zlib)
            prepared = await prepare_export(conn, request=parquet, requested_by=None, via="test")
            return [len(chunk) async for chunk in prepared.chunks()]
        finally:
            await conn.close()

    sizes = asyncio.run(chunk_sizes())
    assert len(sizes) >= 10 * DAYS * 2 // 25  # one chunk per batch of 25 rows, then the manifest


def test_runs_of_households_give_the_export_one_statement_would(
    database: Database, export_url: str, monkeypatch: pytest.MonkeyPatch
):
    seed(database, homes_in({"1011": 6, "1012": 6, "3511": 11, "3512": 12}, daily_import_kwh=3.0))
    whole = {
        shape: asyncio.run(export(export_url, request(shape=shape))) for shape in ("households", "aggregates")
    }
    monkeypatch.setattr(export_module, "HOUSEHOLDS_PER_QUERY", 4)  # runs of 4, or of whole cells
    runs = {
        shape: asyncio.run(export(export_url, request(shape=shape))) for shape in ("households", "aggregates")
    }
    assert runs["aggregates"].rows == whole["aggregates"].rows
    for exported in (whole["households"], runs["households"]):
        pseudonyms = [row["pseudonym"] for row in exported.rows]
        assert pseudonyms == sorted(pseudonyms)  # in pseudonym order, each household's rows together
    assert Counter(
        tuple(v for k, v in row.items() if k != "pseudonym") for row in runs["households"].rows
    ) == (Counter(tuple(v for k, v in row.items() if k != "pseudonym") for row in whole["households"].rows))


def test_an_export_not_read_to_its_end_is_recorded_as_failed(
    database: Database, export_url: str, monkeypatch: pytest.MonkeyPatch
):
    seed(database, homes_in({"1011": 10}))
    monkeypatch.setattr(export_module, "FETCH_ROWS", 25)

    async def read_one_chunk() -> None:
        conn = await asyncpg.connect(export_url)
        try:
            prepared = await prepare_export(
                conn, request=request(file_format="parquet"), requested_by=None, via="test"
            )
            chunks = prepared.chunks()
            await anext(chunks)
            await chunks.aclose()  # what a client that goes away leaves behind
            await prepared.close()
            await prepared.close()
            assert not conn.is_in_transaction()
        finally:
            await conn.close()

    asyncio.run(read_one_chunk())
    [(status, reason, manifest, _)] = records(database)
    assert (status, manifest) == ("failed", None)
    assert "not read to its end" in reason


def test_the_command_line_writes_the_archive_and_refuses_with_the_reason(
    database: Database, export_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    seeded = seed(database, homes_in({"1011": 10}))
    monkeypatch.setenv("THUIS_DATABASE_URL", export_url)
    out = tmp_path / "export.zip"
    common = ["export", "--from", str(START), "--to", str(END), "--measures", ",".join(MEASURES)]
    status = thuis_main([*common, "--resolution", "week", "--shape", "aggregates", "--out", str(out)])
    assert status == 0, capsys.readouterr().err
    exported = read_archive(out.read_bytes())
    assert_nothing_identifying(exported, seeded)
    assert {int(row["households"]) for row in exported.rows} == {10}
    assert json.loads(capsys.readouterr().out)["rows"] == len(exported.rows)
    status = thuis_main(
        [*common, "--resolution", "hour", "--shape", "households", "--out", str(tmp_path / "x")]
    )
    assert status == 1
    assert "per-household series only at daily resolution or coarser" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    assert [(status, parameters["via"]) for status, _, _, parameters in records(database)] == [
        ("finished", "cli"),
        ("refused", "cli"),
    ]


def test_every_measure_names_a_device_kind_and_a_metric():
    measures = research_measures()
    assert {"grid.import_energy_kwh", "p1meter.gas_m3", "ev.charging"} <= set(measures)
    assert measures["solar.energy_kwh"].meter
    assert not measures["solar.power_w"].meter


# --- Properties -------------------------------------------------------------------------------------------

homes_strategy = st.lists(
    st.builds(
        Home,
        postcode_area=st.sampled_from(AREAS),
        coordinate=st.builds(
            lambda town, dlat, dlon: (town[0] + dlat, town[1] + dlon),
            st.sampled_from(TOWNS),
            st.floats(-0.1, 0.1),
            st.floats(-0.1, 0.1),
        ),
        owner=st.sampled_from(OWNER_STATES).flatmap(
            lambda state: st.just(state) | st.just("ok") | st.just("ok")
        ),
        daily_import_kwh=st.just(5.0),
    ),
    min_size=20,
    max_size=70,
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    homes=homes_strategy,
    shape=st.sampled_from(["households", "aggregates"]),
    scheme=st.sampled_from(["pc4", "h3"]),
    k=st.integers(10, 14),
    file_format=st.sampled_from(["csv", "parquet"]),
)
def test_no_export_releases_a_group_under_k_or_anything_identifying_or_an_excluded_household(  # noqa: PLR0917
    database: Database, export_url: str, homes: list[Home], shape: str, scheme: str, k: int, file_format: str
):
    reset(database)
    # Excluded households use far more than anyone else: any trace of them shows in the values.
    for home in homes:
        if home.owner != "ok":
            home.daily_import_kwh = 10_000.0
    seeded = seed(database, homes)
    export_request = request(shape=shape, scheme=scheme, k=k, file_format=file_format, resolution="week")
    try:
        exported = asyncio.run(export(export_url, export_request))
    except ExportRefusedError as refusal:
        reason = refusal.reason
    else:
        reason = None
    event(f"refused: {reason[:60]}" if reason is not None else f"exported {shape}")
    if reason is not None:
        # Refused only when fewer than k may be exported, or no cell can hold k of them.
        assert sum(home.owner == "ok" for home in homes) < k or "falls in a" in reason
        return
    assert_nothing_identifying(exported, seeded)
    consumption = [row for row in exported.rows if row["statistic"] == "consumption"]
    if shape == "households":
        per_cell: dict[str, set[str]] = defaultdict(set)
        for row in exported.rows:
            per_cell[str(row["cell"])].add(str(row["pseudonym"]))
        assert all(len(households) >= k for households in per_cell.values())
        assert all(float(row["value"]) == pytest.approx(35.0) for row in consumption)
        # The same export again: not one pseudonym in common.
        again = asyncio.run(export(export_url, export_request))
        assert not {row["pseudonym"] for row in again.rows} & {row["pseudonym"] for row in exported.rows}
    else:
        assert all(int(row["households"]) >= k for row in exported.rows)
        assert all(float(row["total"]) == pytest.approx(35.0 * int(row["households"])) for row in consumption)
    assert all(size >= k for size in exported.manifest["cells"]["released"].values())
    released = exported.manifest["households"]["released"]
    assert released <= sum(home.owner == "ok" for home in homes)


# --- The portal's API (people made with admin SQL: tests/portal.py's accounts are being rewritten) ---


def person_with_session(database: Database, username: str, role: str) -> dict[str, str]:
    """Create an account and an API session for it directly; return the headers to send."""
    token = secrets.token_urlsafe(32)
    with psycopg.connect(database.owner_url) as conn:
        key_id = conn.execute(
            "INSERT INTO subject_keys (scope, master_key_id, wrapped_key) "
            "VALUES ('account', 'test', '\\x00') RETURNING key_id"
        ).fetchall()[0][0]
        user_id = conn.execute(
            "INSERT INTO users (username, password_hash, role, key_id) VALUES (%s, 'not-a-hash', %s, %s) "
            "RETURNING user_id",
            (username, role, key_id),
        ).fetchall()[0][0]
        conn.execute(
            "INSERT INTO sessions (token_sha256, user_id, kind, expires_at) "
            "VALUES (%s, %s, 'api', now() + interval '1 hour')",
            (token_hash(token), user_id),
        )
    return {"Authorization": f"Bearer {token}"}


async def test_a_researcher_receives_the_export_streamed_and_others_are_refused(database: Database):
    seeded = seed(database, homes_in({"1011": 10}))
    researcher = person_with_session(database, "researcher", "researcher")
    officer = person_with_session(database, "officer", "privacy_officer")
    owner = person_with_session(database, "owner", "owner")
    body = {
        "start": str(START),
        "end": str(END),
        "measures": list(MEASURES),
        "resolution": "week",
        "shape": "households",
        "format": "parquet",
    }
    async with running_portal(database) as portal:
        client = portal.client
        response = await client.post("/api/v1/research/exports", json=body, headers=researcher)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/zip"
        assert response.headers["content-disposition"].startswith('attachment; filename="thuis-export-')
        exported = read_archive(response.content)
        assert_nothing_identifying(exported, seeded)
        assert len({row["pseudonym"] for row in exported.rows}) == 10

        for headers in (owner, officer):
            denied = await client.post("/api/v1/research/exports", json=body, headers=headers)
            assert denied.status_code == 403
        hourly = await client.post(
            "/api/v1/research/exports", json={**body, "resolution": "hour"}, headers=researcher
        )
        assert hourly.status_code == 422
        assert hourly.headers["content-type"] == "application/problem+json"
        assert "per-household series only at daily resolution or coarser" in hourly.json()["detail"]
        extra = await client.post("/api/v1/research/exports", json={**body, "site_id": 1}, headers=researcher)
        assert (extra.status_code, extra.json()["detail"]) == (
            422,
            "body field site_id: Extra inputs are not permitted",
        )

        mine = await client.get("/api/v1/research/exports", headers=researcher)
        assert [(r["status"], r["parameters"]["via"]) for r in mine.json()["items"]] == [
            ("refused", "api"),
            ("finished", "api"),
        ]
        assert mine.json()["items"][1]["manifest"]["households"]["released"] == 10
        every = await client.get("/api/v1/research/exports", headers=officer)
        assert len(every.json()["items"]) == 2
        assert (await client.get("/api/v1/research/exports", headers=owner)).status_code == 403
