"""Benchmark retention: drop 14 expired days of connectivity events as chunks, against a plain DELETE.

    .venv/bin/python -m bench.retention [--runs 3] [--gateways 5000] [--events-per-day 150]

The hypertable holds 28 days of events of every gateway (5,000 x 150 x 28 = 21 million rows by
default, in one-day chunks). Each run puts the 14 oldest days back and removes them once with the
retention worker's `retention_drop_chunks` and once with `DELETE ... WHERE occurred_at < cutoff`, in
alternating order, and checks that both leave exactly the same rows. Prints the medians and the ratio.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import time
from typing import Any

import psycopg

from bench.stack import bench_stack

DAY = dt.timedelta(days=1)
FILL = """
INSERT INTO gateway_connectivity_events
    (occurred_at, gateway_serial, event, messages_received, bytes_received)
SELECT t + (g * interval '1 millisecond'), 'gw-' || lpad(g::text, 5, '0'), 'traffic', 10, 1300
FROM generate_series(%s::timestamptz, %s::timestamptz - interval '1 microsecond', %s::interval) AS t,
     generate_series(1, %s) AS g
"""


def fill(
    conn: psycopg.Connection[tuple[Any, ...]], start: dt.datetime, end: dt.datetime, args: argparse.Namespace
) -> int:
    step = dt.timedelta(days=1) / args.events_per_day
    with conn.transaction():
        return conn.execute(FILL, (start, end, step, args.gateways)).rowcount


def count(conn: psycopg.Connection[tuple[Any, ...]]) -> int:
    row = conn.execute("SELECT count(*) FROM gateway_connectivity_events").fetchone()
    return int(row[0]) if row else 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--gateways", type=int, default=5000)
    parser.add_argument("--events-per-day", type=int, default=150)
    args = parser.parse_args()
    today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    cutoff = today - 14 * DAY
    oldest = cutoff - 14 * DAY
    drop_times: list[float] = []
    delete_times: list[float] = []
    with bench_stack() as stack, psycopg.connect(stack.owner_url, autocommit=True) as conn:
        started = time.perf_counter()
        kept = fill(conn, cutoff, today, args)
        print(
            f"loaded the 14 days that stay: {kept:,} rows in {time.perf_counter() - started:.0f} s",
            flush=True,
        )
        for run in range(1, args.runs + 1):
            order = ("drop", "delete") if run % 2 else ("delete", "drop")
            for method in order:
                expired = fill(conn, oldest, cutoff, args)
                conn.execute("VACUUM ANALYZE gateway_connectivity_events")
                total = count(conn)
                started = time.perf_counter()
                if method == "drop":
                    row = conn.execute(
                        "SELECT retention_drop_chunks('gateway_connectivity_events', %s)", (cutoff,)
                    ).fetchone()
                    removed = f"{row[0] if row else 0} chunks"
                else:
                    deleted = conn.execute(
                        "DELETE FROM gateway_connectivity_events WHERE occurred_at < %s", (cutoff,)
                    ).rowcount
                    removed = f"{deleted:,} rows"
                seconds = time.perf_counter() - started
                left = count(conn)
                if left != kept:
                    raise RuntimeError(f"{method} left {left} rows, expected {kept}")
                (drop_times if method == "drop" else delete_times).append(seconds)
                print(
                    f"run {run}: {method:>6} removed {expired:,} of {total:,} rows ({removed}) "
                    f"in {seconds:.3f} s",
                    flush=True,
                )
    drop, delete = statistics.median(drop_times), statistics.median(delete_times)
    print(f"\nmedian of {args.runs} runs, removing {expired:,} rows (14 days) of {total:,}:")
    print(f"  drop_chunks (retention_drop_chunks)  {drop:10.3f} s")
    print(f"  plain DELETE                          {delete:10.3f} s")
    print(f"  DELETE / drop_chunks                  {delete / drop:10.0f} x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
