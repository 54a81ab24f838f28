"""Energy rollups against the real database: equal to the raw computation, late data, crashes, roles."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import subprocess
import sys
import time
from dataclasses import astuple
from pathlib import Path

import asyncpg
import psycopg
import pytest

from api.services.access import ALWAYS
from api.services.energy import (
    DailyPoint,
    HourlyPoint,
    daily_series,
    daily_series_raw,
    energy_summary,
    hourly_series,
    hourly_series_raw,
    summarise,
)
from ingest import queries as ingest_queries
from ops.localstack import MosquittoBroker
from ops.registry import create_site, register_gateway
from rollup import queries as rollup_queries
from rollup.worker import Recheck, count_pending, drain_pending
from tests.fixtures.database import Database
from tests.fixtures.ingest import IngestProcess
from tests.support import backfill_arguments, count_readings, run_sim, wait_for
from tests.thuis.serving import terminate_sessions
from thuis.backoff import DATABASE_ERRORS

UTC = dt.UTC
# Europe/Amsterdam: summer time starts 2026-03-29 (a 23-hour day) and ends 2026-10-25 (a 25-hour day).
SPRING = (dt.datetime(2026, 3, 27, 20, 0, tzinfo=UTC), dt.datetime(2026, 3, 31, 1, 0, tzinfo=UTC))
AUTUMN = (dt.datetime(2026, 10, 24, 20, 0, tzinfo=UTC), dt.datetime(2026, 10, 27, 1, 0, tzinfo=UTC))
STEP = dt.timedelta(minutes=5)
# device kind -> metrics it reports; meters rise, power wanders.
DEVICES = {
    "grid": ("import_energy_kwh", "export_energy_kwh", "power_l1_w", "current_l1_a"),
    "solar": ("energy_kwh", "power_w"),
    "p1meter": ("import_energy_kwh", "gas_m3", "import_power_w"),
}
Columns = tuple[list[dt.datetime], list[int], list[int], list[float], list[str]]


def make_site(
    database: Database, *, serial: str, time_zone: str = "Europe/Amsterdam"
) -> tuple[int, dict[str, int]]:
    """Create a site with a gateway and one device per kind; return the site and device ids by kind."""
    with psycopg.connect(database.owner_url) as conn:
        site_id = create_site(conn, label=f"rollup test {serial}", time_zone=time_zone)
        register_gateway(
            conn,
            gateway_serial=serial,
            vendor="maxem",
            site_id=site_id,
            registered_at=dt.datetime(2020, 1, 1, tzinfo=UTC),
        )
        devices = {}
        for kind in DEVICES:
            row = conn.execute(
                "INSERT INTO devices (gateway_serial, device_key, device_kind) VALUES (%s, %s, %s) "
                "RETURNING device_id",
                (serial, kind, kind),
            ).fetchone()
            assert row is not None
            devices[kind] = row[0]
    return site_id, devices


def readings(
    site_id: int, devices: dict[str, int], start: dt.datetime, end: dt.datetime, *, seed: int = 1
) -> Columns:
    """Readings every 5 minutes with a few seconds of jitter, some exactly on the hour; rising meters."""
    rng = random.Random(seed)  # noqa: S311 - reproducible readings, not a secret
    columns: Columns = ([], [], [], [], [])
    meters: dict[tuple[str, str], float] = {}
    moment = start
    while moment < end:
        jitter = dt.timedelta(seconds=rng.choice([0, 0, 7, 31, 59]))
        for kind, metrics in DEVICES.items():
            for metric in metrics:
                if metric.endswith(("_kwh", "_m3")):
                    value = meters[(kind, metric)] = meters.get((kind, metric), 1000.0) + rng.random() * 0.2
                else:
                    value = rng.uniform(-500, 4000) if metric.endswith("_w") else rng.uniform(0, 16)
                for column, item in zip(
                    columns, (moment + jitter, devices[kind], site_id, value, metric), strict=True
                ):
                    column.append(item)  # type: ignore[attr-defined]
        moment += STEP
    return columns


async def ingest_energy(database: Database, columns: Columns, *, url: str | None = None) -> int:
    """Store readings with the ingest's own statement, as the ingest's role; return the rows stored."""
    conn = await asyncpg.connect(url or database.ingest_url)
    try:
        async with conn.transaction():
            status = await conn.execute(ingest_queries.INSERT_ENERGY_READINGS, *columns)
    finally:
        await conn.close()
    return int(status.rsplit(" ", 1)[1])


async def drain(database: Database, *, recheck: Recheck | None = None) -> int:
    """Roll up everything pending as the rollup role; return the hours rolled up."""
    conn = await asyncpg.connect(database.rollup_url)
    try:
        return (await drain_pending(conn, batch_hours=37, recheck=recheck)).hours
    finally:
        await conn.close()


async def pending(database: Database) -> int:
    conn = await asyncpg.connect(database.owner_url)
    try:
        return await count_pending(conn)
    finally:
        await conn.close()


def by_key(points: list[HourlyPoint] | list[DailyPoint]) -> dict[tuple[object, str, str], float]:
    keyed: dict[tuple[object, str, str], float] = {}
    for point in points:
        bucket = point.hour if isinstance(point, HourlyPoint) else point.day
        keyed[(bucket, point.device_kind, point.metric)] = point.value
    return keyed


def assert_same(rolled_up: list[HourlyPoint] | list[DailyPoint], raw: list[HourlyPoint] | list[DailyPoint]):
    rolled, computed = by_key(rolled_up), by_key(raw)
    assert rolled.keys() == computed.keys()
    assert rolled == pytest.approx(computed, rel=1e-9, abs=1e-9)


async def assert_rollups_equal_raw(
    database: Database, site_id: int, start: dt.datetime, end: dt.datetime, zones: tuple[str, ...]
) -> None:
    conn = await asyncpg.connect(database.api_url)
    try:
        hourly = await hourly_series(conn, site_id=site_id, start=start, end=end, windows=ALWAYS)
        assert hourly, "no hourly points"
        assert_same(hourly, await hourly_series_raw(conn, site_id=site_id, start=start, end=end))
        first, last = start.date() - dt.timedelta(days=1), end.date() + dt.timedelta(days=2)
        for zone in zones:
            daily = await daily_series(
                conn, site_id=site_id, start=first, end=last, time_zone=zone, windows=ALWAYS
            )
            assert daily, f"no daily points in {zone}"
            raw = await daily_series_raw(conn, site_id=site_id, start=first, end=last, time_zone=zone)
            assert_same(daily, raw)
    finally:
        await conn.close()


@pytest.mark.parametrize("window", [SPRING, AUTUMN], ids=["dst-starts", "dst-ends"])
async def test_rollups_equal_the_raw_computation_across_a_dst_change(database: Database, window):
    site_id, devices = make_site(database, serial="MXM-ROLL1")
    start, end = window
    columns = readings(site_id, devices, start, end)
    assert await ingest_energy(database, columns) == len(columns[0])
    hours = int((end - start) / dt.timedelta(hours=1))
    assert await pending(database) == hours * len(DEVICES)

    assert await drain(database) == hours * len(DEVICES)

    assert await pending(database) == 0
    await assert_rollups_equal_raw(
        database, site_id, start, end, zones=("Europe/Amsterdam", "UTC", "America/New_York")
    )
    with psycopg.connect(database.owner_url) as conn:
        row = conn.execute(
            "SELECT count(DISTINCT hour) FROM energy_hourly h JOIN energy_daily d USING (device_id, metric) "
            "WHERE d.day = %s AND (h.hour AT TIME ZONE 'Europe/Amsterdam')::date = d.day",
            (dt.date(2026, 3, 29) if window == SPRING else dt.date(2026, 10, 25),),
        ).fetchone()
    assert row is not None
    assert row[0] == (23 if window == SPRING else 25)


async def test_days_of_a_half_hour_time_zone_are_computed_exactly(database: Database):
    site_id, devices = make_site(database, serial="MXM-KOLKATA", time_zone="Asia/Kolkata")
    start, end = SPRING
    await ingest_energy(database, readings(site_id, devices, start, end, seed=3))
    await drain(database)
    await assert_rollups_equal_raw(database, site_id, start, end, zones=("Asia/Kolkata",))


async def test_late_and_redelivered_readings_end_up_in_the_rollups(database: Database):
    site_id, devices = make_site(database, serial="MXM-LATE1")
    start, end = SPRING
    columns = readings(site_id, devices, start, end)
    # Every other reading arrives first; the rest arrive after their hours were rolled up.
    first: Columns = tuple(column[::2] for column in columns)  # type: ignore[assignment]
    late: Columns = tuple(column[1::2] for column in columns)  # type: ignore[assignment]
    await ingest_energy(database, first)
    await drain(database)
    with psycopg.connect(database.owner_url) as conn:
        before = conn.execute("SELECT sum(samples) FROM energy_hourly").fetchone()
    assert before == (len(first[0]),)

    assert await ingest_energy(database, late) == len(late[0])
    assert await pending(database) > 0
    await drain(database)
    await assert_rollups_equal_raw(database, site_id, start, end, zones=("Europe/Amsterdam",))

    # A re-delivered batch stores nothing; it marks its hours again, and they stay right.
    assert await ingest_energy(database, late) == 0
    await drain(database)
    await assert_rollups_equal_raw(database, site_id, start, end, zones=("Europe/Amsterdam",))


async def test_readings_committed_while_their_hour_is_rolled_up_are_not_lost(database: Database):
    site_id, devices = make_site(database, serial="MXM-RACE1")
    start = dt.datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
    await ingest_energy(database, readings(site_id, devices, start, start + dt.timedelta(minutes=30)))
    # An ingest transaction stores a later reading of the same hour: the hour is already marked, so its
    # ON CONFLICT DO NOTHING leaves the mark as it is. Before it commits, the worker takes the mark.
    writer = await asyncpg.connect(database.ingest_url)
    try:
        transaction = writer.transaction()
        await transaction.start()
        late_at = start + dt.timedelta(minutes=50)
        late = ([late_at], [devices["grid"]], [site_id], [5000.0], ["import_energy_kwh"])
        assert await writer.execute(ingest_queries.INSERT_ENERGY_READINGS, *late) == "INSERT 0 1"
        worker = asyncio.create_task(drain(database))
        await wait_for(lambda: _no_pending(database), what="the worker to take the marks")
        await asyncio.sleep(0.3)
        assert not worker.done(), "the worker must wait for the writer that was running"
        await transaction.commit()
        await asyncio.wait_for(worker, 30)
    finally:
        await writer.close()
    with psycopg.connect(database.owner_url) as conn:
        row = conn.execute(
            "SELECT last_value, last_at FROM energy_hourly WHERE device_id = %s AND metric = "
            "'import_energy_kwh' AND hour = %s",
            (devices["grid"], start),
        ).fetchone()
    assert row == (5000.0, late_at)
    await assert_rollups_equal_raw(
        database, site_id, start, start + dt.timedelta(hours=1), zones=("Europe/Amsterdam",)
    )


async def _no_pending(database: Database) -> bool:
    return await pending(database) == 0


async def test_hours_left_to_roll_up_again_by_a_lost_connection_are_rolled_up_by_the_next_run(
    database: Database,
):
    site_id, devices = make_site(database, serial="MXM-RACE2")
    start = dt.datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
    await ingest_energy(database, readings(site_id, devices, start, start + dt.timedelta(minutes=30)))
    late_at = start + dt.timedelta(minutes=50)
    recheck = Recheck()  # what a serve loop keeps from one run to the next
    writer = await asyncpg.connect(database.ingest_url)
    try:
        transaction = writer.transaction()
        await transaction.start()
        late = ([late_at], [devices["grid"]], [site_id], [5000.0], ["import_energy_kwh"])
        assert await writer.execute(ingest_queries.INSERT_ENERGY_READINGS, *late) == "INSERT 0 1"
        worker = asyncio.create_task(drain(database, recheck=recheck))
        await wait_for(lambda: _waiting_for_writers(database), what="the worker to wait for the writer")
        # The worker's connection is lost while it waits: its batch is committed, the marks are gone.
        assert await terminate_sessions(database, role="thuis_rollup") == 1
        with pytest.raises(DATABASE_ERRORS):
            await asyncio.wait_for(worker, 30)
        await transaction.commit()
    finally:
        await writer.close()
    assert await pending(database) == 0
    assert await _grid_hour(database, devices["grid"], start) != (5000.0, late_at)
    assert (devices["grid"], start) in recheck.pairs

    await drain(database, recheck=recheck)

    assert await _grid_hour(database, devices["grid"], start) == (5000.0, late_at)
    assert not recheck.pairs
    await assert_rollups_equal_raw(
        database, site_id, start, start + dt.timedelta(hours=1), zones=("Europe/Amsterdam",)
    )


async def _waiting_for_writers(database: Database) -> bool:
    conn = await asyncpg.connect(database.owner_url)
    try:
        return bool(
            await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND usename = 'thuis_rollup' "
                "AND query = $2",
                database.name,
                rollup_queries.WRITERS_STILL_RUNNING,
            )
        )
    finally:
        await conn.close()


async def _grid_hour(database: Database, device_id: int, hour: dt.datetime) -> tuple[object, ...] | None:
    conn = await asyncpg.connect(database.owner_url)
    try:
        row = await conn.fetchrow(
            "SELECT last_value, last_at FROM energy_hourly WHERE device_id = $1 AND metric = "
            "'import_energy_kwh' AND hour = $2",
            device_id,
            hour,
        )
    finally:
        await conn.close()
    return None if row is None else tuple(row)


async def test_a_crash_mid_batch_loses_nothing(database: Database):
    site_id, devices = make_site(database, serial="MXM-CRASH1")
    start, end = AUTUMN
    await ingest_energy(database, readings(site_id, devices, start, end))
    marked = await pending(database)
    conn = await asyncpg.connect(database.rollup_url)
    try:
        transaction = conn.transaction()
        await transaction.start()
        await conn.execute(rollup_queries.LOCK_ROLLUP)
        taken = await conn.fetch(rollup_queries.TAKE_PENDING_HOURS, 50)
        assert len(taken) == 50
        await conn.execute(
            rollup_queries.UPSERT_HOURLY,
            [row[0] for row in taken],
            [row[1] for row in taken],
            ["import_energy_kwh", "power_l1_w"],
        )
        with psycopg.connect(database.owner_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (conn.get_server_pid(),))
        with pytest.raises(asyncpg.ConnectionDoesNotExistError):
            await transaction.commit()
    finally:
        conn.terminate()
    assert await pending(database) == marked
    with psycopg.connect(database.owner_url) as admin:
        assert admin.execute("SELECT count(*) FROM energy_hourly").fetchone() == (0,)

    await drain(database)
    await assert_rollups_equal_raw(database, site_id, start, end, zones=("Europe/Amsterdam",))


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO energy_readings VALUES (now(), 1, 1, 1.0, 'power_w')",
        "UPDATE energy_readings SET value = 0",
        "DELETE FROM energy_readings",
        "TRUNCATE energy_readings",
        "INSERT INTO energy_rollup_pending VALUES (1, now())",
        "UPDATE sites SET time_zone = 'UTC'",
        "SELECT label FROM sites",
    ],
)
def test_the_rollup_role_cannot_modify_readings(database: Database, statement: str):
    with psycopg.connect(database.rollup_url) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(statement)


async def test_energy_summary_per_day_and_month(database: Database):
    site_id, devices = make_site(database, serial="MXM-SUM1")
    start, end = SPRING
    await ingest_energy(database, readings(site_id, devices, start, end))
    await drain(database)
    conn = await asyncpg.connect(database.api_url)
    try:
        first, last = dt.date(2026, 3, 27), dt.date(2026, 4, 2)
        raw = await daily_series_raw(
            conn, site_id=site_id, start=first, end=last, time_zone="Europe/Amsterdam"
        )
        zone = "Europe/Amsterdam"
        days = await energy_summary(
            conn, site_id=site_id, start=first, end=last, time_zone=zone, resolution="day", windows=ALWAYS
        )
        months = await energy_summary(
            conn, site_id=site_id, start=first, end=last, time_zone=zone, resolution="month", windows=ALWAYS
        )
    finally:
        await conn.close()
    assert [day.period for day in days] == [dt.date(2026, 3, d) for d in (27, 28, 29, 30, 31)]
    expected = summarise(raw, resolution="day")
    assert [day.period for day in expected] == [day.period for day in days]
    for day, raw_day in zip(days, expected, strict=True):
        assert astuple(day)[1:] == pytest.approx(astuple(raw_day)[1:])
    assert [month.period for month in months] == [dt.date(2026, 3, 1)]
    month = months[0]
    grid_import, grid_export, solar = (
        sum(point.value for point in raw if (point.device_kind, point.metric) == kind_metric)
        for kind_metric in (
            ("grid", "import_energy_kwh"),
            ("grid", "export_energy_kwh"),
            ("solar", "energy_kwh"),
        )
    )
    assert grid_import > 0
    assert month.import_kwh == pytest.approx(grid_import)  # the Maxem grid channel, not the P1 meter
    assert month.export_kwh == pytest.approx(grid_export)
    assert month.solar_kwh == pytest.approx(solar)
    assert month.consumption_kwh == pytest.approx(grid_import + solar - grid_export)
    assert month.self_consumption_kwh == pytest.approx(max(solar - grid_export, 0.0))
    assert (month.ev_kwh, month.heat_pump_kwh) == (0.0, 0.0)


START = dt.datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
FLEET = {"benext": 2, "maxem": 2}


async def test_the_ingest_marks_hours_and_rollup_run_drains_them(
    database: Database, broker: MosquittoBroker, ingest: IngestProcess, certs_dir: Path
):
    from ops.provision import provision  # noqa: PLC0415 - only this test needs the simulator

    with psycopg.connect(database.owner_url) as conn:
        gateways = provision(conn, certs_dir=certs_dir, **FLEET, registered_at=START - dt.timedelta(days=30))
    summary = await run_sim(broker, certs_dir, *backfill_arguments(FLEET, count=1200, start=START))
    assert summary["acknowledged"] == 1200
    conn = await asyncpg.connect(database.owner_url)
    try:
        await wait_for(lambda: _stored_at_least(conn, 1), what="readings")
        total = await _settled_count(conn)
        assert total > 0
        energy_hours = await conn.fetchval(
            "SELECT count(*) FROM (SELECT DISTINCT device_id, time_bucket('1 hour', measured_at) "
            "FROM energy_readings) AS h"
        )
        assert await conn.fetchval("SELECT count(*) FROM energy_rollup_pending") == energy_hours > 0
        energy_sites = {row[0] for row in await conn.fetch("SELECT DISTINCT site_id FROM energy_readings")}
        assert energy_sites <= {gateway.site_id for gateway in gateways}
    finally:
        await conn.close()

    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "cli", "rollup", "run"],
        env={**os.environ, "THUIS_DATABASE_URL": database.rollup_url},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"rolled up {energy_hours} hours" in result.stdout
    assert await pending(database) == 0
    end = START + dt.timedelta(days=2)
    for site_id in energy_sites:
        await assert_rollups_equal_raw(database, site_id, START, end, zones=("Europe/Amsterdam",))


async def _stored_at_least(conn: asyncpg.Connection, count: int) -> bool:
    return await count_readings(conn) >= count


async def _settled_count(conn: asyncpg.Connection) -> int:
    """Wait until the number of stored readings stops changing for a second."""
    previous = -1
    while True:
        current = await count_readings(conn)
        if current == previous:
            return current
        previous = current
        await asyncio.sleep(1)
        assert time.monotonic() > 0
