"""The energy endpoints: hourly and daily series and the summary, from the rollups, in the user's zone."""

from __future__ import annotations

import asyncio
import datetime as dt

import asyncpg
import psycopg

from rollup.worker import drain_pending
from tests.fixtures.database import Database
from tests.fixtures.portal import running_portal

# Two days of a grid meter (1 kWh imported and 0.25 kWh exported every hour) and solar (0.5 kWh per hour).
START = dt.datetime(2026, 6, 1, 0, 0, tzinfo=dt.UTC)
HOURS = 48


def seed(database: Database, site_id: int) -> None:
    with psycopg.connect(database.owner_url) as conn:
        conn.execute(
            "INSERT INTO gateways (gateway_serial, vendor, site_id) VALUES ('MAXEM-1', 'maxem', %s)",
            (site_id,),
        )
        devices = dict(
            conn.execute(
                "INSERT INTO devices (gateway_serial, device_key, device_kind) "
                "VALUES ('MAXEM-1', 'grid', 'grid'), ('MAXEM-1', 'solar', 'solar') "
                "RETURNING device_kind, device_id"
            ).fetchall()
        )
        for kind, metric, per_hour in (
            ("grid", "import_energy_kwh", 1.0),
            ("grid", "export_energy_kwh", 0.25),
            ("solar", "energy_kwh", 0.5),
        ):
            conn.execute(
                "INSERT INTO energy_readings (measured_at, device_id, site_id, value, metric) "
                "SELECT t, %s, %s, 100 + %s * extract(epoch FROM t - %s) / 3600, %s "
                "FROM generate_series(%s, %s, interval '15 minutes') t",
                (devices[kind], site_id, per_hour, START, metric, START, START + dt.timedelta(hours=HOURS)),
            )
        conn.execute(
            "INSERT INTO energy_rollup_pending (device_id, hour) SELECT DISTINCT device_id, "
            "date_trunc('hour', measured_at) FROM energy_readings ON CONFLICT DO NOTHING"
        )
    asyncio.run(roll_up(database))  # seed runs in a thread of its own


async def roll_up(database: Database) -> None:
    conn = await asyncpg.connect(database.rollup_url)
    try:
        await drain_pending(conn)
    finally:
        await conn.close()


async def test_the_owner_gets_hourly_daily_and_summary_energy_from_the_rollups(database: Database):
    async with running_portal(database) as portal:
        anna = portal.add_person("anna", "owner")
        site = portal.add_site("Huize Anna", owner="anna", time_zone="UTC")
        await asyncio.to_thread(seed, database, site)
        await portal.sign_in(anna)
        base = f"/api/v1/sites/{site}/energy"
        hourly = await portal.client.get(
            f"{base}/hourly",
            headers=anna.headers,
            params={"start": "2026-06-01T10:00:00Z", "end": "2026-06-01T13:00:00Z"},
        )
        assert hourly.status_code == 200, hourly.text
        imported = [p for p in hourly.json() if p["metric"] == "import_energy_kwh"]
        assert [(p["time"], round(p["value"], 6), p["is_consumption"]) for p in imported] == [
            ("2026-06-01T10:00:00Z", 1.0, True),
            ("2026-06-01T11:00:00Z", 1.0, True),
            ("2026-06-01T12:00:00Z", 1.0, True),
        ]
        # Days in the user's own time zone: UTC here, so whole days of 24 hours.
        await portal.client.put(
            "/api/v1/account/preferences", headers=anna.headers, json={"language": "en", "time_zone": "UTC"}
        )
        summary = await portal.client.get(
            f"{base}/summary", headers=anna.headers, params={"start": "2026-06-01", "end": "2026-06-03"}
        )
        assert summary.status_code == 200, summary.text
        days = summary.json()
        assert [d["period"] for d in days] == ["2026-06-01", "2026-06-02"]
        second = days[1]
        assert round(second["import_kwh"], 6) == 24.0
        assert round(second["export_kwh"], 6) == 6.0
        assert round(second["solar_kwh"], 6) == 12.0
        assert round(second["self_consumption_kwh"], 6) == 6.0  # solar 12 - export 6
        assert round(second["consumption_kwh"], 6) == 30.0  # import 24 + solar 12 - export 6
        bad = await portal.client.get(
            f"{base}/summary", headers=anna.headers, params={"start": "2026-06-03", "end": "2026-06-01"}
        )
        assert (bad.status_code, bad.json()["detail"]) == (422, "query parameter start: must be before end")
