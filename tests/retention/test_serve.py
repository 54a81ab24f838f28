"""`thuis retention serve` as a real process outlives a database outage; the settings refuse placeholders."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg

from tests.fixtures.database import Database
from tests.support import wait_for
from tests.thuis.serving import FAST_RECONNECT, ServeProcess, database_outage

GATEWAY = "BNX-OUTAGE"


async def add_expired_events(database: Database, *, days_ago: int, count: int) -> None:
    """Add `count` connectivity events of one moment `days_ago` days back (kept 14 days), as the owner."""
    conn = await asyncpg.connect(database.owner_url)
    try:
        await conn.execute(
            "INSERT INTO gateway_connectivity_events (occurred_at, gateway_serial, event) "
            "SELECT now() - make_interval(days => $1) + n * interval '1 second', $2, 'traffic' "
            "FROM generate_series(1, $3) AS n",
            days_ago,
            GATEWAY,
            count,
        )
    finally:
        await conn.close()


async def runs_and_events(database: Database) -> tuple[int, int]:
    conn = await asyncpg.connect(database.owner_url)
    try:
        row = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM retention_runs), (SELECT count(*) FROM gateway_connectivity_events)"
        )
    finally:
        await conn.close()
    assert row is not None
    return row[0], row[1]


async def test_serve_survives_a_database_outage_and_records_the_next_run(database: Database, workdir: Path):
    conn = await asyncpg.connect(database.owner_url)
    try:
        site_id = await conn.fetchval("INSERT INTO sites (label) VALUES ('outage') RETURNING site_id")
        await conn.execute(
            "INSERT INTO gateways (gateway_serial, vendor, site_id) VALUES ($1, 'benext', $2)",
            GATEWAY,
            site_id,
        )
    finally:
        await conn.close()
    await add_expired_events(database, days_ago=30, count=40)
    serve = ServeProcess(
        "retention",
        "serve",
        "--interval-s",
        "0.3",
        env={"THUIS_DATABASE_URL": database.retention_url, **FAST_RECONNECT},
        log_path=workdir / f"retention-serve-{database.name}.log",
    )
    serve.start()
    try:
        await wait_for(lambda: _at_least(database, runs=1, events=0), what="a first run")
        async with database_outage(database, role="thuis_retention") as ended:
            assert ended == 1  # the connection the serve loop keeps between runs
            await serve.wait_for_log("retention: run failed")
            await serve.wait_for_log("retention: could not connect (InsufficientPrivilegeError", count=2)
            # Meanwhile more events expire; no run removes or records anything.
            await add_expired_events(database, days_ago=20, count=25)
            runs_before, _ = await runs_and_events(database)
            await asyncio.sleep(1.0)
            assert await runs_and_events(database) == (runs_before, 25)
        await serve.wait_for_log("retention: connected again after")
        await wait_for(
            lambda: _at_least(database, runs=runs_before + 1, events=0), what="a run after the outage"
        )
    finally:
        code, seconds = serve.stop()
    assert code == 0, serve.log()
    assert seconds < 5
    conn = await asyncpg.connect(database.owner_url)
    try:
        # The first run after the outage removed and recorded the 25 events that expired during it.
        removed = await conn.fetchval(
            "SELECT rows_removed FROM retention_run_categories WHERE category = 'gateway_connectivity' "
            "AND run_id = (SELECT min(run_id) FROM retention_runs WHERE run_id > $1)",
            runs_before,
        )
    finally:
        await conn.close()
    assert removed == 25


async def _at_least(database: Database, *, runs: int, events: int) -> bool:
    recorded, left = await runs_and_events(database)
    return recorded >= runs and left == events
