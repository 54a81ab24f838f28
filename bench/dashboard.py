"""Benchmark the energy charts: rollups against the same queries on the raw readings, in one run.

    .venv/bin/python -m bench.dashboard [--households 100] [--days 90] [--queries 200]

Loads per household (a site in Europe/Amsterdam with a Maxem meter) one reading a minute for `--days`
days of a grid channel (import and export meter readings in kWh, power in W) and a solar channel (meter
reading in kWh, power in W): 5 readings a minute, monotone meters that follow a daily load and solar
profile. The hours are marked as the ingest marks them, and `rollup.worker.drain_pending` (the code of
`thuis rollup run`) builds the rollups as the `thuis_rollup` role. Then, as the portal's role `thuis_api`,
it times `--queries` rounds over random households of: the 7-day hourly chart and the 1-year daily chart,
each from the rollups (`api.services.energy.hourly_series`, `daily_series`) and from the raw hypertable
(`hourly_series_raw`, `daily_series_raw`, time_bucket), alternating which goes first, and checks that
both give the same points. Prints p50, p95 and the maximum.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import random
import secrets
import statistics
import time
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import psycopg

from api.services.access import ALWAYS
from api.services.energy import (
    DailyPoint,
    HourlyPoint,
    daily_series,
    daily_series_raw,
    hourly_series,
    hourly_series_raw,
)
from bench.stack import bench_stack
from ops.roles import set_role_password
from rollup.worker import BATCH_HOURS, RollupRun, drain_pending

TIME_ZONE = "Europe/Amsterdam"
# One row per minute: a daily load profile with an evening peak, and solar between 6:00 and 20:00 local
# time under random clouds. Meters count the energy of each minute (W / 60,000 = kWh).
LOAD_READINGS = """
WITH minutes AS (
    SELECT t, extract(hour FROM t AT TIME ZONE %(zone)s) + extract(minute FROM t) / 60.0 AS local_hour
    FROM generate_series(%(start)s::timestamptz, %(end)s::timestamptz - interval '1 minute',
                         interval '1 minute') AS t
), power AS (
    SELECT t, greatest(0, sin(pi() * (local_hour - 6) / 14)) * %(peak_w)s * (0.4 + 0.6 * random()) AS solar_w,
           %(base_w)s + 200 * random()
           + CASE WHEN local_hour BETWEEN 17 AND 21 THEN 1500 * random() ELSE 0 END AS load_w
    FROM minutes
), counters AS (
    SELECT t, solar_w, load_w - solar_w AS net_w,
           %(import0)s + sum(greatest(load_w - solar_w, 0)) OVER w / 60000.0 AS import_kwh,
           %(export0)s + sum(greatest(solar_w - load_w, 0)) OVER w / 60000.0 AS export_kwh,
           %(solar0)s + sum(solar_w) OVER w / 60000.0 AS solar_kwh
    FROM power WINDOW w AS (ORDER BY t ROWS UNBOUNDED PRECEDING)
)
INSERT INTO energy_readings (measured_at, device_id, site_id, value, metric)
SELECT c.t, %(grid)s, %(site)s, v.value, v.metric
FROM counters AS c
CROSS JOIN LATERAL (VALUES (c.import_kwh, 'import_energy_kwh'), (c.export_kwh, 'export_energy_kwh'),
                           (c.net_w, 'power_l1_w')) AS v(value, metric)
UNION ALL
SELECT c.t, %(solar)s, %(site)s, v.value, v.metric
FROM counters AS c
CROSS JOIN LATERAL (VALUES (c.solar_kwh, 'energy_kwh'), (c.solar_w, 'power_w')) AS v(value, metric)
"""
MARK_HOURS = """
INSERT INTO energy_rollup_pending (device_id, hour)
SELECT d, h FROM unnest(%(devices)s::bigint[]) AS d,
     generate_series(%(start)s::timestamptz, %(end)s::timestamptz - interval '1 hour', interval '1 hour') AS h
ON CONFLICT DO NOTHING
"""


def load(
    conn: psycopg.Connection[tuple[Any, ...]], args: argparse.Namespace, start: dt.datetime, end: dt.datetime
) -> list[int]:
    """Create the households and their readings; return the site ids."""
    rng = random.Random(args.seed)  # noqa: S311 - reproducible households, not a secret
    sites = []
    conn.execute("SELECT setseed(%s)", (args.seed / 1000,))
    for number in range(args.households):
        serial = f"MXM-{number:05d}"
        with conn.transaction():
            site = conn.execute(
                "INSERT INTO sites (label, time_zone) VALUES (%s, %s) RETURNING site_id", (serial, TIME_ZONE)
            ).fetchone()
            if site is None:
                raise RuntimeError("no site created")
            conn.execute(
                "INSERT INTO gateways (gateway_serial, vendor, site_id, registered_at) "
                "VALUES (%s, 'maxem', %s, %s)",
                (serial, site[0], start),
            )
            devices = conn.execute(
                "INSERT INTO devices (gateway_serial, device_key, device_kind) "
                "VALUES (%s, 'grid', 'grid'), (%s, 'solar', 'solar') RETURNING device_id",
                (serial, serial),
            ).fetchall()
            grid, solar = devices[0][0], devices[1][0]
            conn.execute(
                LOAD_READINGS,
                {
                    "zone": TIME_ZONE,
                    "start": start,
                    "end": end,
                    "peak_w": rng.uniform(2500, 6000),
                    "base_w": rng.uniform(150, 450),
                    "import0": rng.uniform(1000, 30000),
                    "export0": rng.uniform(0, 10000),
                    "solar0": rng.uniform(0, 20000),
                    "grid": grid,
                    "solar": solar,
                    "site": site[0],
                },
            )
            # What the ingest does for the rows it stores.
            conn.execute(MARK_HOURS, {"devices": [grid, solar], "start": start, "end": end})
        sites.append(site[0])
        if (number + 1) % 10 == 0:
            print(f"  {number + 1} households loaded", flush=True)
    return sites


async def measure(
    api_url: str, sites: list[int], args: argparse.Namespace, start: dt.datetime, end: dt.datetime
) -> dict[str, list[float]]:
    """Time the four charts over random households; check the rollups give what the raw readings give."""
    rng = random.Random(args.seed)  # noqa: S311 - a reproducible choice of households
    timings: dict[str, list[float]] = {name: [] for name in ("hourly", "hourly_raw", "daily", "daily_raw")}
    conn = await asyncpg.connect(api_url)
    try:
        for round_ in range(args.queries):
            site = rng.choice(sites)
            week_end = start + dt.timedelta(days=rng.randint(7, args.days))
            week = {"site_id": site, "start": week_end - dt.timedelta(days=7), "end": week_end}
            year_end = end.astimezone(ZoneInfo(TIME_ZONE)).date()
            year = {
                "site_id": site,
                "start": year_end - dt.timedelta(days=365),
                "end": year_end,
                "time_zone": TIME_ZONE,
            }
            names = ["hourly", "hourly_raw", "daily", "daily_raw"]
            results: dict[str, list[HourlyPoint] | list[DailyPoint]] = {}
            for name in reversed(names) if round_ % 2 else names:
                started = time.perf_counter()
                results[name] = await chart(conn, name, week, year)
                timings[name].append(time.perf_counter() - started)
            for kind in ("hourly", "daily"):
                check_equal(results[kind], results[f"{kind}_raw"], f"{kind} chart of site {site}")
    finally:
        await conn.close()
    return timings


async def chart(
    conn: asyncpg.Connection, name: str, week: dict[str, Any], year: dict[str, Any]
) -> list[HourlyPoint] | list[DailyPoint]:
    """Run one of the four chart queries."""
    if name == "hourly":
        return await hourly_series(conn, **week, windows=ALWAYS)
    if name == "hourly_raw":
        return await hourly_series_raw(conn, **week)
    if name == "daily":
        return await daily_series(conn, **year, windows=ALWAYS)
    return await daily_series_raw(conn, **year)


def check_equal(
    rolled: Sequence[HourlyPoint | DailyPoint], raw: Sequence[HourlyPoint | DailyPoint], what: str
) -> None:
    if len(rolled) != len(raw) or not rolled:
        raise RuntimeError(f"{what}: {len(rolled)} points from the rollups, {len(raw)} from the readings")
    for mine, theirs in zip(rolled, raw, strict=True):
        same_key = (mine.device_kind, mine.metric) == (theirs.device_kind, theirs.metric)
        if not same_key or abs(mine.value - theirs.value) > 1e-6 * max(1.0, abs(theirs.value)):
            raise RuntimeError(f"{what}: {mine} != {theirs}")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def roll_up(rollup_url: str, batch_hours: int) -> RollupRun:
    conn = await asyncpg.connect(rollup_url)
    try:
        return await drain_pending(conn, batch_hours=batch_hours)
    finally:
        await conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--households", type=int, default=100)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--batch-hours", type=int, default=BATCH_HOURS)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    # Whole days in the site's zone, ending at local midnight today.
    zone = ZoneInfo(TIME_ZONE)
    today = dt.datetime.now(zone).date()
    end = dt.datetime.combine(today, dt.time(), tzinfo=zone).astimezone(dt.UTC)
    start = dt.datetime.combine(today - dt.timedelta(days=args.days), dt.time(), tzinfo=zone).astimezone(
        dt.UTC
    )
    print(
        f"machine: {platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"{args.households} households x {args.days} days x 1,440 minutes x 5 readings",
        flush=True,
    )
    with bench_stack() as stack:
        rollup_password, api_password = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        with psycopg.connect(stack.cluster.dsn("postgres"), autocommit=True) as conn:
            set_role_password(conn, role="thuis_rollup", password=rollup_password)
            set_role_password(conn, role="thuis_api", password=api_password)
        rollup_url = stack.cluster.dsn("thuis_bench", user="thuis_rollup", password=rollup_password)
        api_url = stack.cluster.dsn("thuis_bench", user="thuis_api", password=api_password)
        with psycopg.connect(stack.owner_url, autocommit=True) as conn:
            started = time.perf_counter()
            sites = load(conn, args, start, end)
            seconds = time.perf_counter() - started
            conn.execute("VACUUM ANALYZE energy_readings")
            conn.execute("VACUUM ANALYZE energy_rollup_pending")
            sizes = conn.execute(
                "SELECT (SELECT count(*) FROM energy_readings), (SELECT count(*) "
                "FROM energy_rollup_pending), pg_size_pretty(hypertable_size('energy_readings'))"
            ).fetchone()
            if sizes is None:
                raise RuntimeError("no sizes")
            print(
                f"loaded {sizes[0]:,} readings ({sizes[2]}) in {seconds:.0f} s; {sizes[1]:,} hours marked",
                flush=True,
            )
        run = asyncio.run(roll_up(rollup_url, args.batch_hours))
        print(
            f"rollups built by the worker (batches of {args.batch_hours} hours): {run.hours:,} device-hours, "
            f"{run.hourly_rows:,} hourly and {run.daily_rows:,} daily rows in {run.seconds:.1f} s "
            f"({run.hours / run.seconds:,.0f} device-hours/s, {sizes[0] / run.seconds:,.0f} readings/s)",
            flush=True,
        )
        with psycopg.connect(stack.owner_url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE energy_hourly")
            conn.execute("VACUUM ANALYZE energy_daily")
            rollup_rows = conn.execute(
                "SELECT (SELECT count(*) FROM energy_hourly), (SELECT count(*) FROM energy_daily), "
                "pg_size_pretty(pg_total_relation_size('energy_hourly') "
                "+ pg_total_relation_size('energy_daily'))"
            ).fetchone()
        if rollup_rows is None:
            raise RuntimeError("no rollup sizes")
        print(
            f"rollups: {rollup_rows[0]:,} hourly and {rollup_rows[1]:,} daily rows ({rollup_rows[2]})",
            flush=True,
        )
        timings = asyncio.run(measure(api_url, sites, args, start, end))
    print(f"\n{args.queries} rounds over random households (ms):")
    print(f"  {'chart':<36} {'p50':>9} {'p95':>9} {'max':>9}")
    labels = {
        "hourly": "7-day hourly, rollups",
        "hourly_raw": "7-day hourly, raw (time_bucket)",
        "daily": "1-year daily, rollups",
        "daily_raw": "1-year daily, raw (time_bucket)",
    }
    for name, label in labels.items():
        values = [value * 1000 for value in timings[name]]
        p50, p95 = statistics.median(values), percentile(values, 0.95)
        print(f"  {label:<36} {p50:9.1f} {p95:9.1f} {max(values):9.1f}")
    for kind in ("hourly", "daily"):
        ratio = statistics.median(timings[f"{kind}_raw"]) / statistics.median(timings[kind])
        print(f"  {kind}: raw / rollups (p50) {ratio:,.0f} x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
