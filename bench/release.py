"""Benchmark research releases against a plain COPY of the same rows, in one run, and the noise they carry.

    .venv/bin/python -m bench.release [--households 1000] [--days 365] [--runs 3] [--rho 0.5]

Seeds households in postcode areas of 10 and of 100 homes (40 % and 60 % of them), so that the project's
release geography (k = 10) holds cells of both sizes, each home with a Maxem grid meter, and for `--days`
days:
- daily rollups of two measures in `energy_daily` (the import meter reading, advancing a known amount a
  day per home, and the power of phase 1): the input of daily releases;
- a reading of the import meter every 15 minutes in `energy_readings`, advancing a known amount each
  quarter hour: the input of 15-minute releases (the rollups are not read at that resolution).
Then, as the `thuis_export` role and with the code of `thuis export` (`privacy.research.release`), it times
`--runs` releases of each kind (daily aggregates of both measures as CSV and as Parquet, 15-minute aggregates
of the meter as Parquet), each spending `--rho`, counting the archive's bytes; in the same run, as the owner
and in a child process, a plain `COPY (SELECT ... the rows the release reads) TO STDOUT`: the ceiling of
reading them out of PostgreSQL. Prints the medians in input rows per second and as a share of the ceiling.

The noise: every released total is compared with the exact sum of its cell and bucket, derived from how the
rows were seeded (not from what the release computed). Printed per resolution: the noise's standard
deviation as the release states it and as measured, and the relative error (noise sd / the cell's mean
total) for cells of 10, 100 and 2,000 households. The noise does not depend on the cell's size, so the
2,000-household figure is the measured sd over 2,000 times a household's mean value.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import io
import json
import math
import multiprocessing
import os
import platform
import secrets
import statistics
import time
import zipfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pyarrow.parquet as pq
from psycopg import sql

from bench.stack import bench_stack
from ops.roles import set_role_password
from privacy.research import budget
from privacy.research.geography import make_geography
from privacy.research.plan import period_bounds
from privacy.research.release import prepare_release
from privacy.research.request import ReleaseRequest
from thuis.db import connection

T = TypeVar("T")
START = dt.date(2025, 1, 6)  # a Monday
SMALL, LARGE = 10, 100  # households per postcode area: each area is one cell of the geography (k = 10)
SIZES = (10, 100, 2_000)  # cell sizes the relative error is printed for
QUARTER = dt.timedelta(minutes=15)
# What each home's meter advances: a day and a quarter hour, by its device id (both within the clamps of
# 30 kWh a day and 1 kWh a quarter hour, so the exact sums are of unclamped values).
DAILY_KWH = "(5 + mod(d.device_id, 7))"
QUARTER_KWH = "(0.05 + mod(d.device_id, 7) * 0.01)"

SEED = """
WITH keys AS (
    INSERT INTO subject_keys (scope, master_key_id, wrapped_key)
    SELECT 'account', 'bench', '\\x00'::bytea FROM generate_series(1, %(households)s + 1)
    RETURNING key_id
), people AS (
    INSERT INTO users (username, password_hash, role, key_id)
    SELECT CASE WHEN key_id = min(key_id) OVER () THEN 'researcher' ELSE 'owner' || key_id END,
           'not-a-hash', CASE WHEN key_id = min(key_id) OVER () THEN 'researcher' ELSE 'owner' END, key_id
    FROM keys
    RETURNING user_id, role
)
INSERT INTO sites (label, owner_user_id, postcode_area)
SELECT 'bench', user_id, CASE
    WHEN rank <= %(small_homes)s THEN (1000 + (rank - 1) / %(small)s)::text
    ELSE (5000 + (rank - 1 - %(small_homes)s) / %(large)s)::text END
FROM (SELECT user_id, row_number() OVER (ORDER BY user_id) AS rank FROM people WHERE role = 'owner') AS o
"""
GATEWAYS = """
INSERT INTO gateways (gateway_serial, vendor, site_id) SELECT 'BENCH-' || site_id, 'maxem', site_id FROM sites
"""
DEVICES = """
INSERT INTO devices (gateway_serial, device_key, device_kind)
SELECT gateway_serial, 'grid', 'grid' FROM gateways
"""
DAILY = f"""
INSERT INTO energy_daily (device_id, metric, day, site_id, samples, mean_value, min_value, max_value,
                          last_value, last_at)
SELECT d.device_id, m.metric, day::date, g.site_id, 1440, m.value, m.value, m.value, m.value,
       day + interval '23 hours'
FROM devices AS d
JOIN gateways AS g USING (gateway_serial)
CROSS JOIN generate_series(%(start)s::date - 1, %(start)s::date + %(days)s - 1, interval '1 day') AS day
CROSS JOIN LATERAL (
    VALUES ('import_energy_kwh', 1000 + (day::date - %(start)s::date) * {DAILY_KWH}),
           ('power_l1_w', 200 + random() * 400)
) AS m(metric, value)
"""  # noqa: S608 - built from this module's constants, no input
# A reading at the start of every quarter hour from one before the period to its last: the advance of each
# 15-minute bucket of the period is exactly the quarter's amount.
READINGS = f"""
INSERT INTO energy_readings (measured_at, device_id, site_id, value, metric)
SELECT at, d.device_id, g.site_id,
       1000 + (extract(epoch FROM at - %(start)s) / 900)::integer * {QUARTER_KWH}, 'import_energy_kwh'
FROM devices AS d
JOIN gateways AS g USING (gateway_serial)
CROSS JOIN generate_series(%(start)s - interval '15 minutes', %(end)s - interval '15 minutes',
                           interval '15 minutes') AS at
WHERE d.device_id %% %(parts)s = %(part)s
"""  # noqa: S608 - built from this module's constants, no input
EXACT = f"""
SELECT s.postcode_area, count(*), sum({DAILY_KWH}), sum({QUARTER_KWH})
FROM sites AS s JOIN gateways AS g USING (site_id) JOIN devices AS d USING (gateway_serial)
GROUP BY s.postcode_area
"""  # noqa: S608 - built from this module's constants, no input
PLAIN_DAILY = """
COPY (SELECT site_id, device_id, day, metric, mean_value, min_value, max_value, last_value FROM energy_daily
      WHERE day >= {start} AND day < {end}) TO STDOUT (FORMAT csv)
"""
PLAIN_QUARTER = """
COPY (SELECT site_id, device_id, measured_at, metric, value FROM energy_readings
      WHERE measured_at >= {start} AND measured_at < {end}) TO STDOUT (FORMAT csv)
"""


@dataclass(frozen=True)
class Kind:
    """One kind of release the benchmark makes."""

    resolution: str
    measures: tuple[str, ...]
    file_format: str
    ceiling: str  # the plain COPY it is compared with


KINDS = {
    "daily aggregates csv": Kind("day", ("grid.import_energy_kwh", "grid.power_l1_w"), "csv", "daily"),
    "daily aggregates parquet": Kind(
        "day", ("grid.import_energy_kwh", "grid.power_l1_w"), "parquet", "daily"
    ),
    "15-minute aggregates parquet": Kind("15min", ("grid.import_energy_kwh",), "parquet", "quarter"),
}


@dataclass
class Timings:
    """Per run: seconds, input rows and output bytes."""

    runs: list[tuple[float, int, int]] = field(default_factory=list)

    def rate(self) -> float:
        return statistics.median(rows / seconds for seconds, rows, _ in self.runs)


def seed(url: str, args: argparse.Namespace) -> dict[str, int]:
    """Load the households, their daily rollups and their readings; return the rows of each table."""
    small_homes = round(args.households * 0.4) // SMALL * SMALL
    start, end = period_bounds(_request(args, KINDS["15-minute aggregates parquet"], 1))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            SEED,
            {"households": args.households, "small_homes": small_homes, "small": SMALL, "large": LARGE},
        )
        conn.execute(GATEWAYS)
        conn.execute(DEVICES)
        conn.execute(DAILY, {"start": START, "days": args.days})
        for part in range(args.households // 100 + 1):  # slices, so the log shows progress
            conn.execute(
                READINGS, {"start": start, "end": end, "parts": args.households // 100 + 1, "part": part}
            )
        conn.execute("VACUUM ANALYZE")
        counts = {}
        for table in ("energy_daily", "energy_readings"):
            row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
            counts[table] = int(row[0]) if row else 0
    return counts


def _request(args: argparse.Namespace, kind: Kind, project_id: int) -> ReleaseRequest:
    return ReleaseRequest(
        project_id=project_id,
        kind="aggregates",
        start=START,
        end=START + dt.timedelta(days=args.days),
        measures=kind.measures,
        resolution=kind.resolution,  # type: ignore[arg-type]
        rho=args.rho,
        file_format=kind.file_format,  # type: ignore[arg-type]
    )


async def make_project(owner_url: str, budget_rho: float) -> tuple[int, int]:
    """Freeze the release geography (PC4, k = 10), make a project with the researcher; return both ids."""
    async with connection(owner_url, application_name="bench-release") as conn:
        researcher: int = await conn.fetchval("SELECT user_id FROM users WHERE role = 'researcher'")
        geography = await make_geography(conn, scheme="pc4", k=10, created_by=None)
        project = await budget.create_project(
            conn, name="bench", geography_id=geography, rho=budget_rho, members=[researcher], created_by=None
        )
    return project, researcher


async def run_release(url: str, request: ReleaseRequest, researcher: int) -> tuple[float, bytes]:
    """Make one release; return its seconds and its archive."""
    async with connection(url, application_name="bench-release") as conn:
        started = time.perf_counter()
        prepared = await prepare_release(conn, request=request, requested_by=researcher, via="bench")
        archive = io.BytesIO()
        try:
            async for chunk in prepared.chunks():
                archive.write(chunk)
        finally:
            await prepared.close()
        return time.perf_counter() - started, archive.getvalue()


def in_child(function: Callable[..., T], *args: Any) -> T:
    """Run a function in a child process, so the memory it takes does not count as the releases'.

    The plain COPY of 2 GB and reading a release's 1.6 million rows back into Python each leave this process
    a gigabyte larger for good (freed, but not returned to the system), hiding the releases' own peak.
    """
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("fork")) as child:
        return child.submit(function, *args).result()


def copy_out(url: str, statement: sql.Composed) -> tuple[float, int, int]:
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


def released_totals(archive: bytes) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Return the manifest and the rows of the meter's totals of a release's archive."""
    with zipfile.ZipFile(io.BytesIO(archive)) as files:
        manifest = json.loads(files.read("manifest.json"))
        name = next(n for n in files.namelist() if n.startswith("data."))
        data = files.read(name)
    if name.endswith(".parquet"):
        rows = pq.read_table(io.BytesIO(data)).to_pylist()
    else:
        import csv  # noqa: PLC0415 - only the CSV archives need it

        rows = [
            {**row, "total": float(row["total"]), "total_sd": float(row["total_sd"])}
            for row in csv.DictReader(io.StringIO(data.decode()))
        ]
    return manifest, [row for row in rows if row["measure"] == "grid.import_energy_kwh"]


Noise = tuple[float, float, dict[int, float]]  # sd stated, sd measured, relative error per cell size


def measured_noise(archive: bytes, exact: dict[str, tuple[int, float]]) -> Noise:
    """Return the noise's sd as stated and as measured, and the relative error per cell size."""
    _, rows = released_totals(archive)
    stated = rows[0]["total_sd"]
    measured = math.sqrt(statistics.fmean((row["total"] - exact[row["cell"]][1]) ** 2 for row in rows))
    per_household = statistics.fmean(per_bucket / homes for homes, per_bucket in exact.values())
    return stated, measured, {size: measured / (size * per_household) for size in SIZES}


def reset_peak_rss() -> None:
    """Start a new peak of resident memory (Linux: writing 5 to clear_refs resets VmHWM)."""
    Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mib() -> float:
    """Return the peak resident memory since the last reset, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


@dataclass
class Results:
    """What one benchmark run measured."""

    plain: dict[str, Timings]
    releases: dict[str, Timings]
    noise: dict[str, Noise] = field(default_factory=dict)
    rss: dict[str, float] = field(default_factory=dict)  # peak MiB during each, the highest of the runs

    def peak(self, what: str) -> None:
        self.rss[what] = max(self.rss.get(what, 0.0), peak_rss_mib())


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--households", type=int, default=1000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rho", type=float, default=0.5, help="what each release spends")
    args = parser.parse_args()
    print(
        f"machine: {platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"{args.households:,} households x {args.days} days, rho {args.rho} a release",
        flush=True,
    )
    with bench_stack() as stack:
        password = secrets.token_urlsafe(24)
        with psycopg.connect(stack.cluster.dsn("postgres"), autocommit=True) as conn:
            set_role_password(conn, role="thuis_export", password=password)
        export_url = stack.cluster.dsn("thuis_bench", user="thuis_export", password=password)
        started = time.perf_counter()
        tables = seed(stack.owner_url, args)
        print(
            f"seeded {tables['energy_daily']:,} daily rollup rows and {tables['energy_readings']:,} readings "
            f"in {time.perf_counter() - started:.0f} s",
            flush=True,
        )
        results = measure(args, stack.owner_url, export_url)
    report(args, results)
    return 0


def measure(args: argparse.Namespace, owner_url: str, export_url: str) -> Results:
    """Time the plain COPYs and the releases, `--runs` times each; measure the noise of the first run."""
    project, researcher = asyncio.run(make_project(owner_url, args.rho * len(KINDS) * args.runs))
    with psycopg.connect(owner_url) as conn:
        exact_rows = conn.execute(EXACT).fetchall()
    exact = {
        "day": {area: (int(n), float(day)) for area, n, day, _ in exact_rows},
        "15min": {area: (int(n), float(quarter)) for area, n, _, quarter in exact_rows},
    }
    quarter_start, quarter_end = period_bounds(_request(args, KINDS["15-minute aggregates parquet"], 1))
    ceilings = {
        "daily": sql.SQL(PLAIN_DAILY).format(
            start=sql.Literal(START), end=sql.Literal(START + dt.timedelta(days=args.days))
        ),
        "quarter": sql.SQL(PLAIN_QUARTER).format(
            start=sql.Literal(quarter_start), end=sql.Literal(quarter_end)
        ),
    }
    results = Results({name: Timings() for name in ceilings}, {name: Timings() for name in KINDS})
    results.peak("before the releases")
    for run in range(args.runs):
        for name, statement in ceilings.items():
            results.plain[name].runs.append(in_child(copy_out, owner_url, statement))
        for name, kind in KINDS.items():
            rows = results.plain[kind.ceiling].runs[-1][1]  # a release reads every row its ceiling copies
            reset_peak_rss()
            seconds, archive = asyncio.run(run_release(export_url, _request(args, kind, project), researcher))
            results.releases[name].runs.append((seconds, rows, len(archive)))
            results.peak(name)  # the archive, kept in memory by the benchmark, included
            if run == 0 and kind.file_format == "parquet":
                results.noise[kind.resolution] = in_child(measured_noise, archive, exact[kind.resolution])
        timings = ", ".join(
            [f"COPY {n} {t.runs[-1][0]:.1f} s" for n, t in results.plain.items()]
            + [f"{n} {t.runs[-1][0]:.1f} s" for n, t in results.releases.items()]
        )
        print(f"  run {run + 1}: {timings}", flush=True)
    return results


def report(args: argparse.Namespace, results: Results) -> None:
    """Print the medians, the noise and the memory."""
    print(f"\nmedians of {args.runs} runs, input rows per second:")
    print(f"  {'what':<30} {'input rows':>12} {'out MB':>8} {'seconds':>8} {'rows/s':>11} {'vs COPY':>8}")
    rows = [(f"plain COPY, {n}", t, results.plain[n]) for n, t in results.plain.items()]
    rows += [(n, t, results.plain[KINDS[n].ceiling]) for n, t in results.releases.items()]
    for name, timing, ceiling in rows:
        seconds = statistics.median(run[0] for run in timing.runs)
        print(
            f"  {name:<30} {timing.runs[0][1]:>12,} {timing.runs[0][2] / 1e6:>8.1f} {seconds:>8.2f} "
            f"{timing.rate():>11,.0f} {timing.rate() / ceiling.rate():>7.0%}"
        )
    print(f"\nnoise of the meter's totals (grid.import_energy_kwh), rho {args.rho} a release:")
    print(f"  {'resolution':<10} {'sd stated':>10} {'sd measured':>12}   relative error for a cell of")
    for resolution, (stated, measured, relative) in results.noise.items():
        shares = "  ".join(f"{size:,}: {share:>8.1%}" for size, share in relative.items())
        print(f"  {resolution:<10} {stated:>10.2f} {measured:>12.2f}   {shares}")
    peaks = ", ".join(f"{what} {mib:.0f}" for what, mib in results.rss.items())
    print(f"peak resident memory of this process during each (MiB): {peaks}")


if __name__ == "__main__":
    raise SystemExit(main())
