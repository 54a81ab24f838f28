"""Benchmark research exports against a plain COPY of the same rows, in one run.

    .venv/bin/python -m bench.export [--households 1000] [--days 365] [--runs 3]

Seeds owners, sites in 200 postcode areas with a Maxem grid meter each, and `--days` days of daily rollups
of two measures (import meter reading in kWh, power in W) straight into `energy_daily`: households x days x
2 rows. Then, as the `thuis_export` role and with the code of `thuis export` (`privacy.research.export`),
it times `--runs` exports of each kind (per-household daily series as CSV and as Parquet, daily aggregates
per cell), counting the archive's bytes and throwing them away, and in the same run, as the owner:

- a plain `COPY (SELECT <the rollup columns> FROM energy_daily WHERE <the period>) TO STDOUT (FORMAT csv)`
  of the same rows: the ceiling of reading them out of PostgreSQL;
- `COPY (<the export's own statement>) TO STDOUT`: what the SQL of the export costs without Python.

Prints the medians in rows/s, their ratio, and the process's peak resident memory after each export kind.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import resource
import secrets
import statistics
import time
from typing import Any

import asyncpg
import psycopg
from psycopg import sql

from bench.stack import bench_stack
from ops.roles import set_role_password
from privacy.research import queries as export_queries
from privacy.research.export import prepare_export
from privacy.research.request import ExportRequest

START = dt.date(2025, 1, 6)  # a Monday
AREAS = 200
SEED = """
WITH keys AS (
    INSERT INTO subject_keys (scope, master_key_id, wrapped_key)
    SELECT 'account', 'bench', '\\x00'::bytea FROM generate_series(1, %(households)s)
    RETURNING key_id
), owners AS (
    INSERT INTO users (username, password_hash, role, key_id)
    SELECT 'owner' || key_id, 'not-a-hash', 'owner', key_id FROM keys
    RETURNING user_id
)
INSERT INTO sites (label, owner_user_id, postcode_area)
SELECT 'bench', user_id, (1000 + user_id %% %(areas)s)::text FROM owners
"""
GATEWAYS = """
INSERT INTO gateways (gateway_serial, vendor, site_id) SELECT 'BENCH-' || site_id, 'maxem', site_id FROM sites
"""
DEVICES = """
INSERT INTO devices (gateway_serial, device_key, device_kind)
SELECT gateway_serial, 'grid', 'grid' FROM gateways
"""
DAILY = """
INSERT INTO energy_daily (device_id, metric, day, site_id, samples, mean_value, min_value, max_value,
                          last_value, last_at)
SELECT d.device_id, m.metric, day::date, g.site_id, 1440, m.value, m.value, m.value, m.value,
       day + interval '23 hours'
FROM devices AS d
JOIN gateways AS g USING (gateway_serial)
CROSS JOIN generate_series(%(start)s::date, %(start)s::date + %(days)s - 1, interval '1 day') AS day
CROSS JOIN LATERAL (
    VALUES ('import_energy_kwh', 1000 + (day::date - %(start)s::date) * (5 + d.device_id %% 7)),
           ('power_l1_w', 200 + random() * 400)
) AS m(metric, value)
"""
PLAIN_COPY = """
COPY (SELECT site_id, day, metric, mean_value, last_value FROM energy_daily
      WHERE day >= {start} AND day < {end})
TO STDOUT (FORMAT csv)
"""
KINDS: dict[str, dict[str, Any]] = {
    "households csv": {"shape": "households", "file_format": "csv"},
    "households parquet": {"shape": "households", "file_format": "parquet"},
    "aggregates csv": {"shape": "aggregates", "file_format": "csv"},
}


def seed(url: str, args: argparse.Namespace) -> int:
    """Load the households and their daily rollups; return the rows of energy_daily."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SEED, {"households": args.households, "areas": AREAS})
        conn.execute(GATEWAYS)
        conn.execute(DEVICES)
        conn.execute(DAILY, {"start": START, "days": args.days})
        conn.execute("VACUUM ANALYZE")
        row = conn.execute("SELECT count(*) FROM energy_daily").fetchone()
    if row is None:
        raise RuntimeError("no rows")
    return int(row[0])


def export_request(args: argparse.Namespace, **kind: Any) -> ExportRequest:
    return ExportRequest(
        start=START,
        end=START + dt.timedelta(days=args.days),
        measures=("grid.import_energy_kwh", "grid.power_l1_w"),
        resolution="day",
        **kind,
    )


async def run_export(url: str, request: ExportRequest) -> tuple[float, int, int]:
    """Run one export, discarding the archive; return seconds, rows and bytes."""
    conn = await asyncpg.connect(url, server_settings={"TimeZone": "UTC"})
    try:
        started = time.perf_counter()
        prepared = await prepare_export(conn, request=request, requested_by=None, via="bench")
        size = 0
        async for chunk in prepared.chunks():
            size += len(chunk)
        seconds = time.perf_counter() - started
    finally:
        await conn.close()
    return seconds, int(prepared.manifest["rows"]), size


def copy_out(url: str, statement: sql.Composable) -> tuple[float, int, int]:
    """Run a COPY ... TO STDOUT, discarding the output; return seconds, rows and bytes."""
    with psycopg.connect(url) as conn, conn.cursor() as cursor:
        started = time.perf_counter()
        size = lines = 0
        with cursor.copy(statement) as copy:
            for data in copy:
                size += len(data)
                lines += bytes(data).count(b"\n")
        seconds = time.perf_counter() - started
    return seconds, lines, size


def export_statement_as_copy(args: argparse.Namespace, sites: list[int]) -> sql.Composable:
    """Return the export's own statement with its values as literals (bench only: COPY takes no binds)."""
    literals = [
        sites,
        START,
        START + dt.timedelta(days=args.days),
        ["grid", "grid"],
        ["import_energy_kwh", "power_l1_w"],
        [True, False],
        list(range(len(sites))),
        "day",
    ]
    text = export_queries.HOUSEHOLD_SERIES_DAY
    for number in range(len(literals), 0, -1):  # $10 before $1
        text = text.replace(f"${number}", "{p" + str(number) + "}")
    query = sql.SQL(text).format(**{f"p{n}": sql.Literal(v) for n, v in enumerate(literals, start=1)})
    return sql.SQL("COPY ({}) TO STDOUT (FORMAT csv)").format(query)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--households", type=int, default=1000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(
        f"machine: {platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"{args.households:,} households x {args.days} days x 2 measures",
        flush=True,
    )
    with bench_stack() as stack:
        password = secrets.token_urlsafe(24)
        with psycopg.connect(stack.cluster.dsn("postgres"), autocommit=True) as conn:
            set_role_password(conn, role="thuis_export", password=password)
        export_url = stack.cluster.dsn("thuis_bench", user="thuis_export", password=password)
        started = time.perf_counter()
        rows = seed(stack.owner_url, args)
        print(f"seeded {rows:,} daily rollup rows in {time.perf_counter() - started:.0f} s", flush=True)
        with psycopg.connect(stack.owner_url) as conn:
            sites = [row[0] for row in conn.execute("SELECT site_id FROM sites ORDER BY site_id").fetchall()]
        end = START + dt.timedelta(days=args.days)
        plain = sql.SQL(PLAIN_COPY).format(start=sql.Literal(START), end=sql.Literal(end))
        results: dict[str, list[tuple[float, int, int]]] = {"plain COPY": [], "COPY of the export query": []}
        results.update({kind: [] for kind in KINDS})
        rss: dict[str, float] = {"before the exports": peak_rss_mib()}
        for run in range(args.runs):
            results["plain COPY"].append(copy_out(stack.owner_url, plain))
            results["COPY of the export query"].append(
                copy_out(stack.owner_url, export_statement_as_copy(args, sites))
            )
            for kind, options in KINDS.items():
                results[kind].append(asyncio.run(run_export(export_url, export_request(args, **options))))
                rss[kind] = peak_rss_mib()
            timings = ", ".join(f"{name} {runs[-1][0]:.1f} s" for name, runs in results.items())
            print(f"  run {run + 1}: {timings}", flush=True)
    print(f"\nmedians of {args.runs} runs:")
    print(f"  {'what':<28} {'rows':>12} {'MB':>8} {'seconds':>8} {'rows/s':>11} {'vs COPY':>8}")
    ceiling = statistics.median(rows / seconds for seconds, rows, _ in results["plain COPY"])
    for name, runs in results.items():
        seconds = statistics.median(run[0] for run in runs)
        rate = statistics.median(rows / secs for secs, rows, _ in runs)
        print(
            f"  {name:<28} {runs[0][1]:>12,} {runs[0][2] / 1e6:>8.1f} {seconds:>8.2f} {rate:>11,.0f} "
            f"{rate / ceiling:>7.0%}"
        )
    print("peak resident memory of this process (MiB): " + ", ".join(f"{k} {v:.0f}" for k, v in rss.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
